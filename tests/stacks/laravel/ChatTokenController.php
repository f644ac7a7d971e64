<?php

namespace App\Http\Controllers;

use Illuminate\Http\Request;
use Illuminate\Support\Facades\Http;

class ChatTokenController extends Controller
{
    public function generate(Request $request)
    {
        $user = $request->user(); // Authenticated user

        $response = Http::withHeaders([
            'X-API-Key' => env('CHATSDK_API_KEY'),
            'Content-Type' => 'application/json'
        ])->post(env('CHATSDK_API_URL') . '/tokens', [
            'userId' => $user->id,
            'name' => $user->name,
            'image' => $user->avatar_url,
            'custom' => [
                'email' => $user->email,
                'department' => $user->department
            ]
        ]);

        return $response->json();
    }
}
