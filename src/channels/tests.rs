//! Unit tests of the channel rules: templates by users by channels, Centrifugo's names, and
//! server-side channels filled from a user id.

use super::*;
use serde_json::json;

fn rule(t: &str) -> Rule {
    Rule::parse(t, RuleKind::Subscribe).unwrap()
}

/// The seed's own example of `custom`, plus rooms and a few odd values.
fn seed_custom() -> Value {
    json!({
        "organizationId": "org-456",
        "role": "admin",
        "tenantId": "tenant-789",
        "rooms": ["general", "random", 7, {"nested": "x"}, "", null],
        "team": {"id": "t-1", "ids": [3, 4], "flag": true},
        "score": 1.5,
        "empty": "",
        "nothing": null,
        "obj": {"a": 1}
    })
}

#[test]
fn templates_by_users_by_channels() {
    let custom = seed_custom();
    let admin = Subject {
        user_id: "user-123",
        custom: Some(&custom),
    };
    let bare = Subject {
        user_id: "user-9",
        custom: None,
    };
    let colon = Subject {
        user_id: "personal:bob",
        custom: None,
    };
    // (template, subject, channel, allowed)
    let table: &[(&str, &Subject<'_>, &str, bool)] = &[
        ("personal:#{userId}", &admin, "personal:user-123", true),
        ("personal:#{userId}", &admin, "personal:user-1234", false),
        ("personal:#{userId}", &admin, "personal:user-12", false),
        ("personal:#{userId}", &bare, "personal:user-123", false),
        ("personal:#{userId}", &bare, "personal:user-9", true),
        (
            "org:#{custom.organizationId}:*",
            &admin,
            "org:org-456:general",
            true,
        ),
        (
            "org:#{custom.organizationId}:*",
            &admin,
            "org:org-456:",
            false,
        ),
        (
            "org:#{custom.organizationId}:*",
            &admin,
            "org:org-45:general",
            false,
        ),
        (
            "org:#{custom.organizationId}:*",
            &admin,
            "org:org-4567:x",
            false,
        ),
        (
            "org:#{custom.organizationId}:*",
            &bare,
            "org:org-456:general",
            false,
        ),
        ("room:#{custom.rooms}", &admin, "room:general", true),
        ("room:#{custom.rooms}", &admin, "room:random", true),
        ("room:#{custom.rooms}", &admin, "room:7", true),
        ("room:#{custom.rooms}", &admin, "room:", false),
        ("room:#{custom.rooms}", &admin, "room:nested", false),
        ("room:#{custom.rooms}", &admin, "room:null", false),
        ("room:#{custom.rooms}", &admin, "room:other", false),
        ("team:#{custom.team.id}", &admin, "team:t-1", true),
        ("team:#{custom.team.ids}:chat", &admin, "team:4:chat", true),
        ("team:#{custom.team.ids}:chat", &admin, "team:5:chat", false),
        ("flags:#{custom.team.flag}", &admin, "flags:true", true),
        ("score:#{custom.score}", &admin, "score:1.5", false),
        ("xy:#{custom.empty}", &admin, "xy:", false),
        ("xy:#{custom.nothing}", &admin, "xy:null", false),
        ("xy:#{custom.obj}", &admin, "xy:{\"a\":1}", false),
        ("xy:#{custom.missing.deep}", &admin, "xy:", false),
        ("xy:#{custom.role.deeper}", &admin, "xy:admin", false),
        ("role:#{custom.role}", &admin, "role:admin", true),
        (
            "tenant:#{custom.tenantId}:u:#{userId}",
            &admin,
            "tenant:tenant-789:u:user-123",
            true,
        ),
        (
            "tenant:#{custom.tenantId}:u:#{userId}",
            &admin,
            "tenant:tenant-789:u:user-9",
            false,
        ),
        ("chat:*", &bare, "chat:room-7", true),
        ("chat:*", &bare, "chat:", false),
        ("chat:*", &bare, "chatx:room", false),
        ("lobby", &bare, "lobby", true),
        ("lobby", &bare, "lobby2", false),
        // No namespace in the template: a value may not introduce one.
        ("#{userId}", &colon, "personal:bob", false),
        ("#{userId}", &bare, "user-9", true),
        // Private rules match only private channels, and the other way round.
        ("$room:#{custom.rooms}", &admin, "$room:general", true),
        ("$room:#{custom.rooms}", &admin, "room:general", false),
        ("room:#{custom.rooms}", &admin, "$room:general", false),
        ("$lobby:*", &bare, "$lobby:a", true),
    ];
    for (template, subject, channel, allowed) in table {
        assert_eq!(
            rule(template).matches(subject, channel),
            *allowed,
            "{template} for {} on {channel}",
            subject.user_id
        );
    }
}

#[test]
fn an_empty_user_id_matches_nothing() {
    let anon = Subject {
        user_id: "",
        custom: None,
    };
    assert!(!rule("personal:#{userId}").matches(&anon, "personal:"));
}

#[test]
fn bad_templates_say_why() {
    use TemplateError::*;
    let cases: &[(&str, TemplateError)] = &[
        ("", Empty),
        ("*", BareStar),
        ("room: x", Whitespace),
        ("room:\u{7}", Whitespace),
        ("room:#{userId", Unclosed),
        ("room:#{user}", UnknownPlaceholder("user".into())),
        ("room:#{custom}", UnknownPlaceholder("custom".into())),
        ("room:#{custom.}", UnknownPlaceholder("custom.".into())),
        (
            "room:#{custom.a..b}",
            UnknownPlaceholder("custom.a..b".into()),
        ),
        ("room:#{custom.a b}", Whitespace),
        ("room:*:x", InnerStar),
        ("room:**", InnerStar),
        ("room:#{userId}*", PlaceholderBeforeStar),
        ("room:#{userId}#{custom.a}", AdjacentPlaceholders),
        ("#{userId}:feed", DynamicNamespace),
        ("r#{userId}:feed", DynamicNamespace),
        ("a:x", BadNamespace("a".into())),
        ("$a:x", BadNamespace("a".into())),
        ("b@d:x", BadNamespace("b@d".into())),
    ];
    for (t, want) in cases {
        assert_eq!(
            Rule::parse(t, RuleKind::Subscribe).unwrap_err(),
            *want,
            "{t}"
        );
    }
    let long = format!("room:{}", "x".repeat(251));
    assert_eq!(
        Rule::parse(&long, RuleKind::Subscribe).unwrap_err(),
        TemplateError::TooLong
    );
    // The message names the placeholder it did not understand.
    let msg = UnknownPlaceholder("org".into()).to_string();
    assert!(msg.contains("#{org}"), "{msg}");
}

#[test]
fn namespaces_privacy_and_custom_use_are_known_after_compiling() {
    let r = rule("$room:#{custom.rooms}");
    assert_eq!(r.namespace(), Some("room"));
    assert!(r.is_private() && r.reads_custom() && !r.is_prefix());
    let r = rule("lobby");
    assert_eq!(r.namespace(), None);
    let r = rule(":lobby");
    assert_eq!(
        r.namespace(),
        None,
        "an empty namespace is without_namespace"
    );
    let r = rule("org:#{custom.organizationId}:*");
    assert_eq!(r.namespace(), Some("org"));
    assert!(r.is_prefix() && !r.is_private());
    assert!(rule("personal:#{userId}").only_user_id());
    let rules = ChannelRules::new(vec![rule("chat:*")]);
    assert!(!rules.reads_custom());
    assert_eq!(rules.parse_custom(Some(r#"{"a":1}"#)), None);
    let rules = ChannelRules::new(vec![rule("chat:*"), rule("room:#{custom.rooms}")]);
    assert_eq!(rules.parse_custom(Some("not json")), None);
    assert_eq!(
        rules.parse_custom(Some(r#"{"rooms":["a"]}"#)),
        Some(json!({"rooms": ["a"]}))
    );
}

#[test]
fn centrifugo_channel_rules() {
    assert_eq!(validate_channel(""), Err(ChannelError::Empty));
    assert_eq!(validate_channel(&"a".repeat(255)), Ok(()));
    assert_eq!(
        validate_channel(&"a".repeat(256)),
        Err(ChannelError::TooLong)
    );
    assert_eq!(validate_channel("chat:a\nb"), Err(ChannelError::Control));
    assert_eq!(validate_channel("chat:a\u{0}"), Err(ChannelError::Control));
    assert_eq!(
        validate_channel("c:x"),
        Err(ChannelError::BadNamespace("c".into()))
    );
    assert_eq!(
        validate_channel("$c h:x"),
        Err(ChannelError::BadNamespace("c h".into()))
    );
    for ok in [
        "chat:room",
        "$room:a",
        "lobby",
        ":lobby",
        "org:acme:general",
        "a.b:c",
    ] {
        assert_eq!(validate_channel(ok), Ok(()), "{ok}");
    }
    assert_eq!(namespace_of("$room:a:b"), Some("room"));
    assert_eq!(namespace_of("lobby"), None);
}

#[test]
fn server_side_channels_fill_the_user_within_the_rule_namespace() {
    let rules = ChannelRules::new(
        [
            ("room:#{custom.r}", RuleKind::Subscribe),
            ("#{userId}", RuleKind::ServerSide),
            ("user-#{userId}", RuleKind::ServerSide),
            ("personal:#{userId}", RuleKind::ServerSide),
            ("$private:#{userId}", RuleKind::ServerSide),
        ]
        .into_iter()
        .map(|(t, k)| Rule::parse(t, k).unwrap())
        .collect(),
    );
    assert_eq!(
        rules.server_side_channels("u-1"),
        ["u-1", "user-u-1", "personal:u-1", "$private:u-1"]
    );
    // A namespace boundary in the id: only rules with a namespace of their own keep it.
    assert_eq!(
        rules.server_side_channels("personal:bob"),
        ["personal:personal:bob", "$private:personal:bob"]
    );
    // The private prefix in the id: never a private channel from a public rule.
    assert_eq!(
        rules.server_side_channels("$x"),
        ["user-$x", "personal:$x", "$private:$x"]
    );
    assert_eq!(rules.server_side().iter().count(), 4);
    // A subscribe rule names no channel of its own.
    assert_eq!(
        Rule::parse("room:#{custom.r}", RuleKind::Subscribe)
            .unwrap()
            .fill_user("u"),
        None
    );
}
