from fastapi import FastAPI, Depends
import httpx
import os

app = FastAPI()
CHATSDK_API_URL = os.getenv("CHATSDK_API_URL")
CHATSDK_API_KEY = os.getenv("CHATSDK_API_KEY")

@app.post("/api/auth/chat-token")
async def get_chat_token(user: User = Depends(get_current_user)):
    """Generate ChatSDK token for authenticated user"""

    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{CHATSDK_API_URL}/tokens",
            headers={
                "X-API-Key": CHATSDK_API_KEY,
                "Content-Type": "application/json"
            },
            json={
                "userId": user.id,
                "name": user.name,
                "image": user.avatar_url,
                "custom": {
                    "email": user.email,
                    "department": user.department
                }
            }
        )

        return response.json()
