//! The operator console in a real headless Chromium driven through WebDriver (ChromeDriver,
//! Debian `chromium` and `chromium-driver`), against the real server and a fake Centrifugo:
//! sign-in with a wrong then the right token, an API key shown once, a user found, disabled
//! (the kick reaches Centrifugo) and enabled, the REST key rotated, each action found in the
//! audit view, sign-out leaving nothing after a reload; and the browser's log free of CSP
//! violations and errors for the whole run.
//!
//! `CONSOLE_SCREENSHOTS=dashboards cargo test --test api console_browser::` also writes
//! `console-users.png` and `console-audit.png` (the README's screenshots) into that directory.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::fake_centrifugo::FakeCentrifugo;
use crate::helpers::{until, TestApp, GIVE_UP};
use crate::process::{free_port, tool, KillOnDrop};

const KEY: &str = "centrifugo-api-key-for-the-console-tests-01";

/// ChromeDriver with a headless Chromium session on a fresh profile; both end on drop.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver_url: String,
    _driver: KillOnDrop,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        Browser::start_with(true).await
    }

    /// A session with JavaScript on or off (Chromium's content setting, before any page loads).
    async fn start_with(javascript: bool) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let chromium = tool("chromium");
        let mut last_error = String::new();
        // A free port can be taken before ChromeDriver binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let mut driver = KillOnDrop(
                Command::new(tool("chromedriver"))
                    .arg(format!("--port={port}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let driver_url = format!("http://127.0.0.1:{port}");
            if !ready(&driver_url, &mut driver.0).await {
                last_error = format!("chromedriver did not answer on {driver_url}");
                continue;
            }
            let caps = json!({
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1280,800",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                },
                "goog:loggingPrefs": {"browser": "ALL"},
            });
            let mut caps = caps;
            if !javascript {
                caps["goog:chromeOptions"]["prefs"] =
                    json!({"profile.managed_default_content_settings.javascript": 2});
            }
            let caps = caps.as_object().unwrap().clone();
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&driver_url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver_url,
                        _driver: driver,
                        _profile: profile,
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        panic!("cannot start a headless Chromium session: {last_error}");
    }

    /// Everything the page logged since the last call (ChromeDriver's `browser` log).
    pub(crate) async fn log(&self) -> Vec<Value> {
        let sid = self.client.session_id().await.unwrap().unwrap();
        let r: Value = reqwest::Client::new()
            .post(format!("{}/session/{sid}/se/log", self.driver_url))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["value"].as_array().cloned().unwrap_or_default()
    }
}

/// Whether ChromeDriver answers on `url`: false once it exited (the port was taken).
async fn ready(url: &str, driver: &mut std::process::Child) -> bool {
    let driver = std::cell::RefCell::new(driver);
    until("chromedriver answering or exited", || async {
        if driver.borrow_mut().try_wait().unwrap().is_some() {
            return Ok(false);
        }
        match reqwest::get(format!("{url}/status")).await {
            Ok(r) if r.status().is_success() => Ok(true),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

pub(crate) async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(GIVE_UP)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

pub(crate) async fn click(c: &Client, css: &str) {
    find(c, css).await.click().await.unwrap();
}

pub(crate) async fn fill(c: &Client, css: &str, text: &str) {
    let e = find(c, css).await;
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// The element's visible text once it contains `want`.
pub(crate) async fn wait_text(c: &Client, css: &str, want: &str) -> String {
    until(&format!("{css} showing {want:?}"), || async {
        let e = c.find(Locator::Css(css)).await.map_err(|e| e.to_string())?;
        match e.text().await {
            Ok(t) if t.contains(want) => Ok(t),
            Ok(t) => Err(format!("{t:?}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

pub(crate) async fn displayed(c: &Client, css: &str) -> bool {
    find(c, css).await.is_displayed().await.unwrap()
}

async fn screenshot(c: &Client, name: &str) {
    let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") else {
        return;
    };
    let png = c.screenshot().await.unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
}

pub(crate) async fn admin_get(t: &TestApp, path: &str) -> Value {
    t.admin_get(path).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_session_in_headless_chromium() {
    crate::need::need!(Chromium);
    let f = FakeCentrifugo::start(KEY).await;
    let api = f.api_url();
    let t = TestApp::spawn_with(move |c| {
        c.centrifugo.api_url = api;
        c.secrets.centrifugo_api_key = KEY.into();
        // One operator clicking through every view: more calls a minute than the default.
        c.limits.admin_per_ip_per_minute = 10_000;
    })
    .await;
    let b = Browser::start().await;
    // The run in a task of its own, so the browser session is closed whatever happens in it.
    let c = b.client.clone();
    let run = tokio::spawn(async move {
        session(&t, &f, &c).await;
        t
    });
    let outcome = run.await;
    let log = b.log().await;
    b.client.clone().close().await.unwrap();
    let t = match outcome {
        Ok(t) => t,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };

    // The only entry allowed: the browser's note of the 401 the wrong token drew (which also
    // shows the log is really read).
    let expected_401 = |e: &Value| {
        let msg = e["message"].as_str().unwrap_or_default();
        e["source"] == "network" && msg.contains("/admin/overview") && msg.contains("status of 401")
    };
    assert_eq!(
        log.iter().filter(|e| expected_401(e)).count(),
        1,
        "{log:#?}"
    );
    let problems: Vec<&Value> = log
        .iter()
        .filter(|e| !expected_401(e) && matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
        .collect();
    assert!(problems.is_empty(), "browser log: {problems:#?}");
    assert!(
        !log.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Content Security Policy")),
        "{log:#?}"
    );
    drop(t);
}

/// No credential is ever submitted in a URL: Enter in the sign-in field, with JavaScript off
/// (the page as a slow link shows it before its script ran) and on, leaves the token out of the
/// address bar and the history, and no field of a password type has a name a form would send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_never_lands_in_a_url() {
    crate::need::need!(Chromium);
    let t = TestApp::spawn().await;
    let token = t.app.secrets.admin_token.expose().to_string();
    for javascript in [false, true] {
        let b = Browser::start_with(javascript).await;
        let c = b.client.clone();
        let (token, page) = (token.clone(), t.url("/admin/"));
        let outcome = tokio::spawn(async move {
            c.goto(&page).await.unwrap();
            fill(&c, "#signin-token", &format!("{token}\u{E007}")).await;
            if javascript {
                wait_text(&c, "#overview-stats", "ready").await;
            }
            // ChromeDriver returns once a navigation the key started has committed; a few
            // more looks cover one that commits late.
            for _ in 0..10 {
                let url = c.current_url().await.unwrap().to_string();
                assert!(
                    !url.contains(&token) && !url.contains("token="),
                    "javascript {javascript}: the token is in the URL {url}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !javascript {
                // Still the sign-in page, its script never run (so the setting took).
                let submit = find(&c, "#signin-submit").await;
                assert!(!submit.is_enabled().await.unwrap(), "scripts ran");
            }
            let source = c.source().await.unwrap();
            assert!(!source.contains(&token), "javascript {javascript}");
        })
        .await;
        b.client.clone().close().await.unwrap();
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    // The page itself: a posting form, no named password field, submit disabled until the
    // script enables it.
    let page = t.client.get(t.url("/admin/")).send().await.unwrap();
    let html = page.text().await.unwrap();
    let form = html
        .split("<form id=\"signin-form\"")
        .nth(1)
        .and_then(|f| f.split("</form>").next())
        .unwrap();
    assert!(form.contains("method=\"post\""), "{form}");
    assert!(!form.contains(" name="), "{form}");
    assert!(form.contains(" disabled>"), "{form}");
}

async fn session(t: &TestApp, f: &FakeCentrifugo, c: &Client) {
    let token = t.app.secrets.admin_token.expose().to_string();
    c.goto(&t.url("/admin/")).await.unwrap();
    // A 1280×800 viewport, whatever the window's own frame takes.
    let frame = c
        .execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]",
            vec![],
        )
        .await
        .unwrap();
    let px = |i: usize| frame[i].as_u64().unwrap_or(0) as u32;
    c.set_window_size(1280 + px(0), 800 + px(1)).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "chatsdk-auth console");

    // A wrong token: the API's own sentence, and still signed out.
    let refusal = t
        .client
        .get(t.url("/admin/overview"))
        .header("Authorization", "Bearer not-the-token")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let sentence = refusal["error"].as_str().unwrap();
    fill(c, "#signin-token", "not-the-token\u{E007}").await; // Enter submits.
    wait_text(c, "#signin-error", sentence).await;
    assert!(!displayed(c, "#nav").await);

    // The right one: the overview.
    fill(c, "#signin-token", &format!("{token}\u{E007}")).await;
    wait_text(c, "#overview-stats", "ready").await;
    assert!(displayed(c, "#nav").await);

    // An API key, shown once; it works.
    click(c, "#nav a[data-view='api-keys']").await;
    wait_text(c, "#api-keys-rows", "test").await;
    fill(c, "#api-key-name", "backend-2").await;
    click(c, "#api-key-create button[type='submit']").await;
    let key = wait_text(c, "#new-key-value", "chatsdk_").await;
    wait_text(c, "#api-keys-rows", "backend-2").await;
    assert!(displayed(c, "#new-key-copy").await);
    let people = [
        (
            "carol",
            "Carol Diaz",
            json!({"team": "support", "plan": "pro"}),
        ),
        ("alice", "Alice Johnson", json!({"team": "sales"})),
        ("bob", "Bob Kim", json!({"plan": "free"})),
        (
            "dave",
            "Dave Okafor",
            json!({"team": "ops", "oncall": true}),
        ),
        ("erin", "Erin Smith", json!({})),
    ];
    for (id, name, custom) in &people {
        let (s, v) = t
            .tokens_with_key(
                &key,
                json!({"userId": id, "name": name, "custom": custom,
                       "image": format!("https://cdn.example/{id}.png")}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    click(c, "#new-key-done").await;
    assert!(!displayed(c, "#new-key").await);
    assert!(!c.source().await.unwrap().contains(&key), "shown once");

    // Users: browse, find carol, disable (kick), enable.
    click(c, "#nav a[data-view='users']").await;
    wait_text(c, "#users-rows", "Carol Diaz").await;
    fill(c, "#user-lookup-id", "carol\u{E007}").await;
    wait_text(c, "#user-detail-id", "carol").await;
    wait_text(c, "#user-detail-custom", "\"team\": \"support\"").await;
    wait_text(c, "#user-detail-image", "https://cdn.example/carol.png").await;
    click(c, "#user-disable").await;
    wait_text(c, "#confirm-title", "carol").await;
    click(c, "#confirm-ok").await;
    wait_text(c, "#user-result", "Disabled carol. Kick queued: yes").await;
    let (kick, _) = f.wait_kick("carol").await;
    assert_eq!(kick.code, 4503);
    wait_text(c, "#user-detail-status", "disabled").await;
    click(c, "#user-enable").await;
    wait_text(c, "#confirm-title", "Enable user").await;
    click(c, "#confirm-ok").await;
    wait_text(c, "#user-result", "Enabled carol.").await;
    wait_text(c, "#user-detail-status", "active").await;
    assert!(admin_get(t, "/admin/users/carol").await["disabled"] == false);
    screenshot(c, "users").await;

    // Signing keys: the ws HMAC warning comes before any confirmation; rotate REST.
    click(c, "#nav a[data-view='signing-keys']").await;
    let before = admin_get(t, "/admin/keys").await;
    let old_rest = current_kid(&before, "rest");
    wait_text(c, "#signing-keys-rows", &old_rest).await;
    click(c, "#rotate-ws").await;
    wait_text(c, "#confirm-warning", "Centrifugo must be reloaded").await;
    click(c, "#confirm-cancel").await;
    assert_eq!(
        current_kid(&admin_get(t, "/admin/keys").await, "ws"),
        current_kid(&before, "ws")
    );
    click(c, "#rotate-rest").await;
    wait_text(c, "#confirm-title", "REST").await;
    click(c, "#confirm-ok").await;
    // The rotation runs on the blocking pool: read the ring once the page says it is done.
    wait_text(c, "#rotate-result", "Rotated the").await;
    let new_rest = current_kid(&admin_get(t, "/admin/keys").await, "rest");
    assert_ne!(new_rest, old_rest);
    wait_text(c, "#rotate-result", &format!("new kid {new_rest}")).await;
    wait_text(c, "#signing-keys-rows", &new_rest).await;

    // The audit view has each of those actions, newest first; the filter narrows it.
    click(c, "#nav a[data-view='audit']").await;
    let rows = wait_text(c, "#audit-rows", "signing_key.rotated").await;
    for want in [
        "api_key.created",
        "backend-2",
        "user.disabled",
        "user.enabled",
        "user:carol",
        "signing_key:rest",
    ] {
        assert!(rows.contains(want), "{want} not in {rows}");
    }
    assert!(rows.find("signing_key.rotated") < rows.find("user.enabled"));
    assert!(rows.find("user.enabled") < rows.find("user.disabled"));
    screenshot(c, "audit").await;
    find(c, "#audit-action")
        .await
        .select_by_value("user.disabled")
        .await
        .unwrap();
    click(c, "#audit-filter button[type='submit']").await;
    until("the audit filter applied", || async {
        let text = find(c, "#audit-rows").await.text().await.unwrap();
        if !text.contains("user.enabled") && text.contains("user.disabled") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;

    // Delete asks to type the id; app-wide revocation to type REVOKE ALL.
    click(c, "#nav a[data-view='users']").await;
    fill(c, "#user-lookup-id", "erin\u{E007}").await;
    wait_text(c, "#user-detail-id", "erin").await;
    click(c, "#user-delete").await;
    wait_text(c, "#confirm-title", "Delete user “erin”").await;
    assert!(!find(c, "#confirm-ok").await.is_enabled().await.unwrap());
    fill(c, "#confirm-typed", "eri").await;
    assert!(!find(c, "#confirm-ok").await.is_enabled().await.unwrap());
    fill(c, "#confirm-typed", "erin").await;
    click(c, "#confirm-ok").await;
    wait_text(c, "#user-result", "Deleted erin. Kick queued: yes").await;
    f.wait_kick("erin").await;
    assert!(!displayed(c, "#user-detail").await);
    click(c, "#nav a[data-view='overview']").await;
    click(c, "#revoke-all").await;
    wait_text(c, "#confirm-typed-label", "REVOKE ALL").await;
    assert!(!find(c, "#confirm-ok").await.is_enabled().await.unwrap());
    fill(c, "#confirm-typed", "REVOKE ALL\u{E007}").await;
    wait_text(
        c,
        "#revoke-all-result",
        "Revoked every token issued at or before",
    )
    .await;
    let revoked = admin_get(t, "/admin/audit?action=app.tokens_revoked").await;
    assert_eq!(revoked["events"].as_array().unwrap().len(), 1, "{revoked}");

    // Sign out: the token is gone, and a reload shows nothing but the sign-in.
    click(c, "#signout").await;
    find(c, "#signin-token").await;
    c.refresh().await.unwrap();
    assert!(displayed(c, "#signin-token").await);
    let stored = c
        .execute("return sessionStorage.length", vec![])
        .await
        .unwrap();
    assert_eq!(stored, json!(0));
    c.goto(&t.url("/admin/#users")).await.unwrap();
    assert!(displayed(c, "#signin-token").await);
    let text = find(c, "body").await.text().await.unwrap();
    for gone in ["carol", "Carol Diaz", &new_rest, "backend-2"] {
        assert!(!text.contains(gone), "{gone} still on the page: {text}");
    }
}

fn current_kid(keys: &Value, kind: &str) -> String {
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == kind && k["state"] == "current")
        .unwrap_or_else(|| panic!("no current {kind} key in {keys}"))["kid"]
        .as_str()
        .unwrap()
        .to_string()
}
