<?php
// Runs the guide's Laravel controller (ChatTokenController.php, unchanged) the way Laravel
// would: `generate` runs for the request's logged-in user and its return value is the JSON
// response. Only the framework is stood in for. Laravel's `Http` client is Guzzle underneath:
// `withHeaders(...)->post($url, $data)` sends `$data` with Guzzle's `json` option and does not
// throw on a 4xx, and `->json()` decodes the body to arrays, which is what the stand-in below
// does, with Debian's php-guzzlehttp-guzzle.
//
// CHAT_USER (JSON: id, name, avatar_url, email, department) is the logged-in user, an
// Eloquent-like object: an integer id stays an int. Prints the controller's return value as JSON.

namespace Illuminate\Http {
    class Request
    {
        public function __construct(private object $user) {}
        public function user(): object { return $this->user; }
    }
}

namespace Illuminate\Support\Facades {
    class Http
    {
        public static function withHeaders(array $headers): PendingRequest
        {
            return new PendingRequest($headers);
        }
    }

    class PendingRequest
    {
        public function __construct(private array $headers) {}

        public function post(string $url, array $data = []): Response
        {
            $client = new \GuzzleHttp\Client(['http_errors' => false]);
            return new Response($client->post($url, ['headers' => $this->headers, 'json' => $data]));
        }
    }

    class Response
    {
        public function __construct(private \Psr\Http\Message\ResponseInterface $response) {}
        public function json(): mixed { return json_decode((string) $this->response->getBody(), true); }
    }
}

namespace App\Http\Controllers {
    class Controller {}
}

namespace {
    require_once 'GuzzleHttp/autoload.php';

    function env(string $key, mixed $default = null): mixed
    {
        $value = getenv($key);
        return $value === false ? $default : $value;
    }

    require __DIR__ . '/ChatTokenController.php';

    $user = json_decode(getenv('CHAT_USER'), false, 512, JSON_THROW_ON_ERROR);
    $controller = new App\Http\Controllers\ChatTokenController();
    echo json_encode($controller->generate(new Illuminate\Http\Request($user)), JSON_THROW_ON_ERROR);
}
