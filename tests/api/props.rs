//! Property tests (proptest): the request parser, the wsToken verifier and the proxy body
//! parsers never panic on arbitrary bytes; over real HTTP no body earns a 5xx; and every
//! accepted `POST /tokens` stores exactly what the upsert rules say (a model of each user's
//! profile is kept alongside and compared with the store after every request).

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use chatsdk_auth::proxy::connect::ConnectRequest;
use chatsdk_auth::proxy::SessionRequest;

use crate::helpers::{connect_body, TestApp};

/// Arbitrary bytes, and JSON-looking text (which reaches deeper into the parsers).
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        "[{}\\[\\]\":,0-9a-zA-Z\\\\. \\-]{0,200}".prop_map(String::into_bytes),
        any::<JsonValue>().prop_map(|v| v.0.to_string().into_bytes()),
        (any::<JsonValue>(), any::<JsonValue>()).prop_map(|(a, b)| {
            json!({"userId": a.0, "name": b.0, "data": {"token": "x"}, "custom": {"k": 1}})
                .to_string()
                .into_bytes()
        }),
    ]
}

/// A small arbitrary JSON value.
#[derive(Debug, Clone)]
struct JsonValue(Value);

impl Arbitrary for JsonValue {
    type Parameters = ();
    type Strategy = BoxedStrategy<JsonValue>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "\\PC{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .prop_map(JsonValue)
        .boxed()
    }
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn the_tokens_parser_answers_every_body_with_a_client_error(body in bodies()) {
        if let Err(e) = chatsdk_auth::tokens::parse(&body) {
            prop_assert!(e.status().is_client_error(), "{:?} -> {}", e, e.status());
        }
    }

    #[test]
    fn the_proxy_parsers_never_panic(body in bodies()) {
        for result in [
            chatsdk_auth::proxy::parse::<ConnectRequest>(&body).err(),
            chatsdk_auth::proxy::parse::<SessionRequest>(&body).err(),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(result.status().is_client_error());
        }
    }
}

/// Token-shaped strings: three base64url-ish segments, sometimes with a real header.
fn tokens() -> impl Strategy<Value = String> {
    let seg = "[A-Za-z0-9_\\-=+/]{0,120}";
    prop_oneof![
        "\\PC{0,300}",
        (seg, seg, seg).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        (any::<JsonValue>(), seg).prop_map(|(claims, sig)| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.{sig}",
                b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
                b64.encode(claims.0.to_string())
            )
        }),
    ]
}

#[test]
fn the_verifier_refuses_every_forged_token_without_panicking() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(TestApp::spawn());
    let mut runner = TestRunner::new(Config {
        cases: 1024,
        ..Config::default()
    });
    runner
        .run(&tokens(), |token| {
            prop_assert!(t
                .app
                .verifier
                .verify(&token, chatsdk_auth::now_unix())
                .is_err());
            Ok(())
        })
        .unwrap();
}

#[test]
fn no_body_earns_a_5xx_over_http() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(TestApp::spawn_with(|c| {
        c.limits.mint_per_user_per_minute = 0;
        c.limits.failed_auth_per_ip_per_minute = 0;
    }));
    let routes = prop_oneof![
        Just("/tokens"),
        Just("/centrifugo/connect"),
        Just("/centrifugo/refresh"),
        Just("/centrifugo/subscribe"),
        Just("/centrifugo/sub_refresh"),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    runner
        .run(&(routes, bodies()), |(route, body)| {
            let status = rt.block_on(async {
                t.client
                    .post(t.url(route))
                    .header("X-API-Key", &t.key)
                    .header("X-Chatsdk-Proxy-Secret", t.proxy_secret())
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
            prop_assert!(!status.is_server_error(), "{route}: {status}");
            Ok(())
        })
        .unwrap();
    // And a real token still connects afterwards.
    let (s, b) = rt.block_on(async {
        let ws = t.mint("after-fuzz").await["wsToken"]
            .as_str()
            .unwrap()
            .to_string();
        t.proxy(
            "/centrifugo/connect",
            &connect_body(json!({"data": {"token": ws}})),
            &[],
        )
        .await
    });
    assert_eq!(s, 200);
    assert_eq!(b["result"]["user"], "after-fuzz");
}

/// What one request does to one field: leave it, clear it (`null`), or set it.
#[derive(Debug, Clone)]
enum Op<T> {
    Omit,
    Null,
    Set(T),
}

fn op<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Op<T>> {
    prop_oneof![Just(Op::Omit), Just(Op::Null), s.prop_map(Op::Set)]
}

#[derive(Debug, Clone)]
struct Request {
    user: String,
    name: Op<String>,
    image: Op<String>,
    custom: Op<JsonValue>,
}

fn requests() -> impl Strategy<Value = Request> {
    (
        // A few ids, so that later requests update earlier users.
        prop_oneof![
            Just("u1".to_string()),
            Just("ü 2".to_string()),
            "[a-z0-9@._\\-]{1,12}"
        ],
        op("[^\\p{C}]{0,40}"),
        op("[a-z0-9]{1,12}".prop_map(|p| format!("https://cdn.example/{p}.png"))),
        op(
            proptest::collection::btree_map("[a-z]{1,5}", any::<JsonValue>(), 0..3).prop_map(|m| {
                JsonValue(Value::Object(
                    m.into_iter().map(|(k, v)| (k, v.0)).collect(),
                ))
            }),
        ),
    )
        .prop_map(|(user, name, image, custom)| Request {
            user,
            name,
            image,
            custom,
        })
}

/// The stored profile a model keeps: (name, image, custom text).
type Profile = (Option<String>, Option<String>, Option<String>);

#[test]
fn every_accepted_request_round_trips_through_the_store() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(TestApp::spawn_with(|c| {
        c.limits.mint_per_user_per_minute = 0;
    }));
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(requests(), 1..8), |batch| {
            let mut model: HashMap<String, Profile> = HashMap::new();
            let prefix = format!("{}-", rand_prefix());
            for r in batch {
                let id = format!("{prefix}{}", r.user);
                // The body is written by hand so `custom` is sent as exact text.
                let mut fields = vec![format!("\"userId\":{}", json!(id))];
                let mut apply =
                    |key: &str, op: &Op<String>, slot: &mut Option<String>, raw: bool| match op {
                        Op::Omit => {}
                        Op::Null => {
                            fields.push(format!("\"{key}\":null"));
                            *slot = None;
                        }
                        Op::Set(v) => {
                            fields.push(if raw {
                                format!("\"{key}\":{v}")
                            } else {
                                format!("\"{key}\":{}", json!(v))
                            });
                            // An empty name or image clears, like null.
                            *slot = (raw || !v.is_empty()).then(|| v.clone());
                        }
                    };
                let entry = model.entry(id.clone()).or_default();
                apply("name", &r.name, &mut entry.0, false);
                apply("image", &r.image, &mut entry.1, false);
                let custom = match &r.custom {
                    Op::Omit => Op::Omit,
                    Op::Null => Op::Null,
                    Op::Set(v) => Op::Set(v.0.to_string()),
                };
                apply("custom", &custom, &mut entry.2, true);
                let body = format!("{{{}}}", fields.join(","));
                let expected = entry.clone();
                let (status, resp, stored) = rt.block_on(async {
                    let r = t
                        .client
                        .post(t.url("/tokens"))
                        .header("X-API-Key", &t.key)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let resp: Value = r.json().await.unwrap();
                    (status, resp, t.app.store.get_user(&id).await.unwrap())
                });
                prop_assert_eq!(status, 200, "{} -> {}", body, resp);
                let stored = stored.expect("an accepted request stores its user");
                prop_assert_eq!(
                    (
                        stored.name.clone(),
                        stored.image.clone(),
                        stored.custom.clone()
                    ),
                    expected.clone(),
                    "{}",
                    body
                );
                prop_assert_eq!(
                    &resp["user"],
                    &json!({"id": id, "name": expected.0, "image": expected.1})
                );
            }
            Ok(())
        })
        .unwrap();
}

/// A fresh id prefix per case, so cases never see each other's users.
fn rand_prefix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
