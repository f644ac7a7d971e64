// Runs the guide's Express route (chat-token.js, unchanged) the way Express would: the route's
// handler gets `req.user` from "your auth system" and answers through `res`. Only the
// framework is stood in for; the call to POST /tokens is the guide's own code.
//
// - `express`: an app whose `post(path, handler)` keeps the handler.
// - `node-fetch`: the guide's code is for node-fetch 2, whose `fetch` is the WHATWG fetch that
//   Node (18 and later) has built in, so the built-in one is handed over. (Debian's node-fetch
//   is version 3, an ES module that `require` cannot return as a function.)
//
// CHAT_USER (JSON: id, name, avatar_url, email, department) is the logged-in user. Prints
// {"status": <what res.status said, 200 by default>, "body": <what res.json got>}.
'use strict';
const Module = require('module');

let handler;
const stand_ins = {
  express: () => ({ post: (_path, h) => { handler = h; } }),
  'node-fetch': globalThis.fetch,
};
const load = Module._load;
Module._load = function (request, ...rest) {
  return request in stand_ins ? stand_ins[request] : load.call(this, request, ...rest);
};
require('./chat-token.js');

const u = JSON.parse(process.env.CHAT_USER);
const req = {
  user: { id: u.id, name: u.name, avatarUrl: u.avatar_url, email: u.email, department: u.department },
};
let status = 200;
const res = {
  status(code) { status = code; return this; },
  json(body) { process.stdout.write(JSON.stringify({ status, body })); },
};
handler(req, res);
