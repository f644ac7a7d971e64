"""Runs the guide's FastAPI endpoint (chat_token.py, unchanged) the way FastAPI would: the
endpoint gets the user its dependency resolved and its return value is the response. Only the
framework is stood in for (`fastapi.FastAPI` keeps the function, `Depends` marks the
dependency); the call to POST /tokens is the guide's own code, with httpx (Debian's
python3-httpx).

CHAT_USER (JSON: id, name, avatar_url, email, department) is the logged-in user. Prints the
endpoint's return value as JSON.
"""
import asyncio
import json
import os
import sys
import types
from dataclasses import dataclass

fastapi = types.ModuleType("fastapi")


class FastAPI:
    def post(self, _path):
        return lambda endpoint: endpoint


fastapi.FastAPI = FastAPI
fastapi.Depends = lambda dependency: dependency
sys.modules["fastapi"] = fastapi


@dataclass
class User:
    id: object
    name: str
    avatar_url: str
    email: str
    department: object


def get_current_user():
    return User(**json.loads(os.environ["CHAT_USER"]))


here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "chat_token.py")
scope = {"__name__": "chat_token", "User": User, "get_current_user": get_current_user}
with open(path) as f:
    exec(compile(f.read(), path, "exec"), scope)

print(json.dumps(asyncio.run(scope["get_chat_token"](get_current_user()))))
