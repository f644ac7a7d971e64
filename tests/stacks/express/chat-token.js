const express = require('express');
const fetch = require('node-fetch');

const app = express();
const CHATSDK_API_URL = process.env.CHATSDK_API_URL;
const CHATSDK_API_KEY = process.env.CHATSDK_API_KEY;

app.post('/api/auth/chat-token', async (req, res) => {
  // 1. Verify user is authenticated (your existing auth middleware)
  const user = req.user; // From your auth system

  // 2. Generate ChatSDK token
  try {
    const response = await fetch(`${CHATSDK_API_URL}/tokens`, {
      method: 'POST',
      headers: {
        'X-API-Key': CHATSDK_API_KEY,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify({
        userId: user.id,
        name: user.name,
        image: user.avatarUrl,
        custom: {
          email: user.email,
          department: user.department
        }
      })
    });

    const tokens = await response.json();
    res.json(tokens);
  } catch (error) {
    res.status(500).json({ error: 'Failed to generate chat token' });
  }
});
