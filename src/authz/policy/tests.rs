//! Tests of the policy engine: principals, actions, globs, documents and decisions together.

use serde_json::json;
use serde_json::Value;

use super::action::*;
use super::break_glass::*;
use super::decide::*;
use super::document::*;
use super::principal::*;
use crate::authz::action::Action;
use crate::pb;

/// 2026-12-01T00:00:00Z
const DEC_1: u64 = 1_796_083_200_000;
const NOW: u64 = DEC_1 - 86_400_000;
const HOUR: u64 = 3_600_000;

fn st(effect: &str, principals: &[&str], actions: &[&str], resources: &[&str]) -> Value {
    json!({"effect": effect, "principals": principals, "actions": actions, "resources": resources})
}

fn with(mut statement: Value, key: &str, value: Value) -> Value {
    statement[key] = value;
    statement
}

fn pol(name: &str, statements: Vec<Value>) -> pb::Policy {
    let doc = json!({"name": name, "statements": statements}).to_string();
    parse_document(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

fn caller<'a>(principal: &'a str, groups: &'a [String]) -> Caller<'a> {
    Caller {
        principal,
        groups,
        token_lifetime_ms: Some(HOUR),
    }
}

fn query(action: Action, resource: &str) -> Query<'_> {
    Query {
        action,
        resource,
        region: "eu-west",
        now_ms: NOW,
    }
}

fn ask(policies: &[pb::Policy], principal: &str, action: Action, resource: &str) -> Decision {
    decide(policies, &caller(principal, &[]), &query(action, resource))
}

fn ask_as(policies: &[pb::Policy], principal: &str, groups: &[&str], action: Action, resource: &str) -> Decision {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    decide(policies, &caller(principal, &groups), &query(action, resource))
}

/// A resource the action can name, for tables over every action.
fn resource_for(a: Action) -> &'static str {
    match a {
        Action::PolicyAdmin => "policy/acme-read",
        Action::ClusterAdmin => "cluster",
        Action::AuditRead => "audit",
        Action::DrillRun => "drill",
        _ => "acme/prod/db",
    }
}

// ---- principals and actions ----

#[test]
fn principal_ids_parse() {
    for (id, kind, tenant, name) in [
        ("service:acme:api", "service", Some("acme"), "api"),
        ("user:acme:alice@example.com", "user", Some("acme"), "alice@example.com"),
        ("group:acme:oncall", "group", Some("acme"), "oncall"),
        ("user:alice", "user", None, "alice"),
        ("group:sre", "group", None, "sre"),
        ("k8s-sa:team.a:build_1", "k8s-sa", Some("team.a"), "build_1"),
    ] {
        let p = parse_principal(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            (p.kind.as_str(), p.tenant.as_deref(), p.name.as_str()),
            (kind, tenant, name)
        );
        assert_eq!(p.is_platform(), tenant.is_none());
        assert_eq!(p.to_string(), id);
    }
}

#[test]
fn principal_ids_reject_bad_shapes() {
    let long = "a".repeat(10_000);
    let long_kind = format!("{}:x", "a".repeat(33));
    for (id, why) in [
        ("", "1 part(s)"),
        ("root", "1 part(s)"),
        ("service:acme:api:x", "4 part(s)"),
        ("User:alice", "kind \"User\""),
        ("1user:alice", "kind"),
        ("service:ACME:api", "tenant \"ACME\""),
        ("service:\u{0430}cme:api", "tenant"), // Cyrillic а
        ("service::api", "tenant is empty"),
        (":alice", "kind is empty"),
        ("user:", "name is empty"),
        ("service:acme: api", "name"),
        ("service:acme:api\n", "name"),
        ("service:-acme:api", "tenant"),
        ("service:acme:*", "name"),
        ("service:shared:api", "reserved"),
        (long_kind.as_str(), "kind is 33 bytes"),
        (long.as_str(), "the limit is"),
    ] {
        let e = parse_principal(id).expect_err(id).to_string();
        assert!(e.contains(why), "{id:?}: {e}");
        assert!(e.len() < 400 && !e.contains('\n'), "{e}");
    }
}

#[test]
fn actions_parse() {
    for a in ALL_ACTIONS {
        assert_eq!(parse_action(a.as_str()), Ok(a));
    }
    for (s, why) in [
        ("health:read", "not governed"),
        ("secrets:*", "use one of"),
        ("*", "use one of"),
        ("SECRETS:READ", "use one of"),
        ("secrets:read ", "use one of"),
        ("", "use one of"),
    ] {
        let e = parse_action(s).expect_err(s).to_string();
        assert!(e.contains(why), "{s:?}: {e}");
    }
    assert!(is_platform_action(Action::PolicyAdmin) && !is_platform_action(Action::SecretsAdmin));
    assert!(is_secrets_action(Action::SecretsReadBreakGlass) && !is_secrets_action(Action::AuditRead));
}

// ---- documents ----

const EXAMPLE: &str = r#"{
    "name": "acme-read",
    "description": "what acme services read",
    "statements": [
        {"sid": "read", "effect": "allow", "principals": ["service:acme:api", "group:acme:*"],
         "actions": ["secrets:read"], "resources": ["acme/*"],
         "conditions": {"regions": ["eu-west"], "not_after": "2026-12-01T00:00:00Z", "max_token_ttl": "1h"}},
        {"effect": "deny", "principals": ["*"], "actions": ["secrets:*"], "resources": ["acme/prod/*"],
         "conditions": {}},
        {"sid": "glass", "effect": "allow", "principals": ["user:oncall"],
         "actions": ["secrets:read-break-glass"], "resources": ["acme/prod/*"],
         "conditions": {"max_token_ttl": "1h 30m 250ms"}},
        {"effect": "allow", "principals": ["user:alice"], "actions": ["policy:admin", "cluster:admin"],
         "resources": ["policy/acme-*", "token/service:acme:*", "cluster", "kms"]}
    ]
}"#;

#[test]
fn document_parses() {
    let p = parse_document(EXAMPLE).unwrap();
    assert_eq!(p.name, "acme-read");
    assert_eq!(p.description, "what acme services read");
    assert_eq!(p.statements.len(), 4);
    let s = &p.statements[0];
    assert_eq!(s.sid, "read");
    assert_eq!(s.effect, pb::Effect::Allow as i32);
    assert_eq!(s.principals, ["service:acme:api", "group:acme:*"]);
    let c = s.conditions.as_ref().unwrap();
    assert_eq!(c.regions, ["eu-west"]);
    assert_eq!(c.not_after_ms, DEC_1);
    assert_eq!(c.max_token_ttl_ms, HOUR);
    assert_eq!(p.statements[1].effect, pb::Effect::Deny as i32);
    assert_eq!(p.statements[1].conditions, None, "empty conditions are no conditions");
    let glass = p.statements[2].conditions.as_ref().unwrap();
    assert_eq!(glass.max_token_ttl_ms, HOUR + HOUR / 2 + 250);
}

#[test]
fn document_round_trips_canonically() {
    let p = parse_document(EXAMPLE).unwrap();
    let doc = to_document(&p);
    assert_eq!(parse_document(&doc).unwrap(), p, "{doc}");
    assert_eq!(
        to_document(&parse_document(&doc).unwrap()),
        doc,
        "canonical form is stable"
    );
    for shown in [
        r#""not_after": "2026-12-01T00:00:00Z""#,
        r#""max_token_ttl": "1h""#,
        r#""max_token_ttl": "1h 30m 250ms""#,
    ] {
        assert!(doc.contains(shown), "{shown} missing in\n{doc}");
    }
    assert!(!doc.contains("\"sid\": \"\""), "empty fields are left out:\n{doc}");
    // Metadata is not part of the document; milliseconds survive.
    let mut stored = p.clone();
    stored.updated_at_ms = 5;
    stored.updated_by = "root".into();
    stored.statements[0].conditions.as_mut().unwrap().not_after_ms = DEC_1 + 1;
    let back = parse_document(&to_document(&stored)).unwrap();
    assert_eq!(back.updated_by, "");
    assert_eq!(back.statements[0].conditions.as_ref().unwrap().not_after_ms, DEC_1 + 1);
}

#[test]
fn to_document_never_panics_on_odd_stored_policies() {
    let p = pb::Policy {
        name: "odd".into(),
        statements: vec![pb::PolicyStatement {
            effect: 0,
            conditions: Some(pb::Conditions {
                regions: vec![],
                not_after_ms: u64::MAX,
                max_token_ttl_ms: u64::MAX,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let doc = to_document(&p);
    assert!(
        doc.contains("\"effect\": \"deny\"") && doc.contains("9999-12-31T23:59:59.999Z"),
        "{doc}"
    );
}

/// A two-statement document whose statement 1 is `statement`.
fn doc_with(statement: Value) -> String {
    let ok = st("allow", &["service:acme:api"], &["secrets:read"], &["acme/*"]);
    json!({"name": "p", "statements": [ok, statement]}).to_string()
}

#[test]
fn document_statement_errors_say_what_and_where() {
    let base = st("allow", &["service:acme:api"], &["secrets:read"], &["acme/*"]);
    let b = |k: &str, v: Value| doc_with(with(base.clone(), k, v));
    let many: Vec<String> = (0..101).map(|i| format!("user:u{i}")).collect();
    let long_glob = format!("acme/{}", "b".repeat(520));
    let mut no_effect = base.clone();
    no_effect.as_object_mut().unwrap().remove("effect");
    let platform = |resources: Value| {
        doc_with(with(
            st("allow", &["user:alice"], &["policy:admin"], &[]),
            "resources",
            resources,
        ))
    };
    let glass = |conditions: Value| {
        let s = st(
            "allow",
            &["user:alice"],
            &["secrets:read-break-glass", "secrets:read"],
            &["acme/*"],
        );
        doc_with(with(s, "conditions", conditions))
    };
    let cases: Vec<(String, &str)> = vec![
        (b("principals", json!([])), "statement 1: principals has 0 entries"),
        (b("principals", json!(many)), "statement 1: principals has 101 entries"),
        (
            b("principals", json!(["Service:acme:api"])),
            r#"statement 1: principals[0] "Service:acme:api": kind"#,
        ),
        (
            b("principals", json!(["user:a", "service:shared:*"])),
            "principals[1] \"service:shared:*\": tenant \"shared\" is reserved",
        ),
        (b("principals", json!(["a:b:c:d"])), "4 part(s)"),
        (b("principals", json!(["service:acme:a b"])), "principals[0]"),
        (b("actions", json!([])), "statement 1: actions has 0 entries"),
        (
            b("actions", json!(["secrets:list"])),
            r#"statement 1: actions[0] "secrets:list""#,
        ),
        (b("actions", json!(["health:read"])), "not governed by policies"),
        (b("actions", json!(["policy:*"])), "wildcards secrets:* and *"),
        (b("resources", json!([])), "statement 1: resources has 0 entries"),
        (
            b("resources", json!(["acme//x"])),
            r#"statement 1: resources[0] "acme//x": empty segment"#,
        ),
        (b("resources", json!(["/acme/x"])), "starts with '/'"),
        (b("resources", json!(["acme/x/"])), "ends with '/'"),
        (b("resources", json!(["acme/../x"])), r#"segment ".." is not allowed"#),
        (b("resources", json!(["acme/./x"])), r#"segment "." is not allowed"#),
        (b("resources", json!(["Acme/x"])), r#"character "A" is not allowed"#),
        (b("resources", json!(["acme/%2F"])), r#"character "%" is not allowed"#),
        (b("resources", json!(["\u{0430}cme/x"])), "character"),
        (
            b("resources", json!(["acme/-x"])),
            "must match [a-z0-9][a-z0-9._-]{0,62}",
        ),
        (b("resources", json!([""])), "resources[0] \"\": is empty"),
        (b("resources", json!(["acme/x", long_glob])), "resources[1]"),
        (b("resources", json!(["token/service:acme:*"])), "character \":\""),
        (platform(json!(["acme/*"])), "is not a platform resource"),
        (platform(json!(["policy/Bad"])), "policy name"),
        (platform(json!(["policy/a/*"])), "policy glob"),
        (platform(json!(["token/service:ACME:*"])), "token principal tenant"),
        (
            b("effect", json!("permit")),
            "statement 1: unknown variant `permit`, expected `allow` or `deny`",
        ),
        (doc_with(no_effect), "statement 1: missing field `effect`"),
        (b("sid", json!("has space")), "statement 1: sid \"has space\""),
        (b("extra", json!(1)), "statement 1: unknown field `extra`"),
        (
            b("conditions", json!({"region": ["eu-west"]})),
            "statement 1: conditions: unknown field `region`",
        ),
        (
            b("conditions", json!({"regions": []})),
            "statement 1: conditions.regions is empty",
        ),
        (
            b("conditions", json!([["eu-west"]])),
            "statement 1: conditions: invalid type: sequence, expected a JSON object",
        ),
        (
            b("conditions", json!({"regions": ["EU"]})),
            r#"statement 1: conditions.regions[0] "EU": must match"#,
        ),
        (
            b("conditions", json!({"not_after": "tomorrow"})),
            r#"statement 1: conditions.not_after "tomorrow""#,
        ),
        (
            b("conditions", json!({"not_after": "2026-12-01"})),
            "conditions.not_after",
        ),
        (
            b("conditions", json!({"not_after": "1970-01-01T00:00:00Z"})),
            "must be after 1970",
        ),
        (
            b("conditions", json!({"max_token_ttl": "soon"})),
            r#"conditions.max_token_ttl "soon""#,
        ),
        (b("conditions", json!({"max_token_ttl": "0s"})), "at least 1ms"),
        (
            b("conditions", json!({"max_token_ttl": "20years"})),
            "at most 3650 days",
        ),
        (
            glass(json!(null)),
            "statement 1: allows secrets:read-break-glass without a time bound",
        ),
        (
            glass(json!({"regions": ["eu-west"]})),
            "must set conditions.not_after or conditions.max_token_ttl",
        ),
    ];
    for (doc, want) in cases {
        let e = parse_document(&doc).expect_err(&doc).to_string();
        assert!(e.contains(want), "want {want:?}\n got {e}\n for {doc}");
    }
    // Bounded break-glass is fine, as is an unbounded deny of it.
    parse_document(&glass(json!({"not_after": "2026-12-01T00:00:00Z"}))).unwrap();
    parse_document(&glass(json!({"max_token_ttl": "15m"}))).unwrap();
    let deny = st("deny", &["*"], &["secrets:read-break-glass"], &["*"]);
    parse_document(&doc_with(deny)).unwrap();
}

#[test]
fn document_level_errors() {
    let s = st("allow", &["user:a"], &["secrets:read"], &["acme/*"]);
    let dup_sid = with(s.clone(), "sid", json!("x"));
    let hundred_one: Vec<Value> = (0..101).map(|_| s.clone()).collect();
    let huge = format!(
        r#"{{"name":"p","description":"{}","statements":[]}}"#,
        "x".repeat(MAX_DOCUMENT_BYTES)
    );
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "EOF"),
        ("[]".into(), "invalid type: sequence, expected a JSON object"),
        (r#"["p", "", []]"#.into(), "expected a JSON object"),
        (r#"{"name":"p","statements":[["allow"]]}"#.into(), "statement 0: invalid type: sequence, expected a JSON object"),
        (r#"{"name":"p","statements":[null]}"#.into(), "statement 0: invalid type: null"),
        (r#"{"name":"p","statements":{}}"#.into(), "expected a list of statements"),
        (huge, "bytes; the limit is 65536"),
        (json!({"name": "p", "statements": [s], "owner": "me"}).to_string(), "unknown field `owner`"),
        (json!({"name": "p"}).to_string(), "missing field `statements`"),
        (json!({"name": "Bad Name", "statements": [s]}).to_string(), "policy name \"Bad Name\" is invalid"),
        (json!({"name": "p", "statements": []}).to_string(), "has 0 statements"),
        (json!({"name": "p", "statements": hundred_one}).to_string(), "has 101 statements"),
        (json!({"name": "p", "statements": [dup_sid, dup_sid]}).to_string(), "statement 1: sid \"x\" is used twice"),
        (json!({"name": "p", "description": "a\u{7}b", "statements": [s]}).to_string(), "control characters"),
        (
            r#"{"name":"p","statements":[{"effect":"deny","effect":"allow","principals":["*"],"actions":["*"],"resources":["*"]}]}"#.into(),
            "statement 0: duplicate field `effect`",
        ),
    ];
    for (doc, want) in cases {
        let e = parse_document(&doc).expect_err(&doc).to_string();
        assert!(e.contains(want), "want {want:?}\n got {e}");
    }
    let e = parse_document(r#"{"name":"p","statements":[],"\u001b[31m":1}"#)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\u{1b}'), "control characters are escaped: {e}");
}

// ---- decisions ----

#[test]
fn deny_wins_and_no_match_denies() {
    let allow = pol(
        "acme-read",
        vec![st("allow", &["service:acme:api"], &["secrets:read"], &["acme/*"])],
    );
    let deny = pol(
        "acme-deny",
        vec![with(
            st("deny", &["service:acme:*"], &["secrets:*"], &["acme/prod/*"]),
            "sid",
            json!("no-prod"),
        )],
    );
    let both = [allow.clone(), deny.clone()];
    let d = ask(&both, "service:acme:api", Action::SecretsRead, "acme/dev/x");
    assert!(d.allowed, "{d}");
    assert_eq!(d.statement_label(), "acme-read#0");
    assert!(
        d.explanation.contains("acme-read#0") && d.explanation.contains("2 policies"),
        "{d}"
    );

    for policies in [both.to_vec(), vec![deny.clone(), allow.clone()]] {
        let d = ask(&policies, "service:acme:api", Action::SecretsRead, "acme/prod/db");
        assert!(!d.allowed, "deny wins in any order: {d}");
        assert_eq!(d.statement_label(), "acme-deny#0 (no-prod)");
        assert!(d.explanation.contains("deny wins"), "{d}");
    }

    let d = ask(&both, "service:acme:api", Action::SecretsWrite, "acme/dev/x");
    assert!(!d.allowed && d.statement.is_none(), "{d}");
    assert!(
        d.explanation.contains("no statement in the 2 policies consulted"),
        "{d}"
    );
    let d = ask(&both, "service:acme:other", Action::SecretsRead, "acme/dev/x");
    assert!(!d.allowed, "another principal of the tenant is not named: {d}");
    let d = ask(&[], "service:acme:api", Action::SecretsRead, "acme/dev/x");
    assert!(!d.allowed && d.explanation.contains("0 policies"), "{d}");
}

#[test]
fn statement_refs_display() {
    let r = StatementRef {
        policy: "p".into(),
        index: 2,
        sid: "x".into(),
    };
    assert_eq!(r.to_string(), "p#2 (x)");
    assert_eq!(
        StatementRef {
            sid: String::new(),
            ..r
        }
        .to_string(),
        "p#2"
    );
}

#[test]
fn wildcards_never_grant_break_glass() {
    // Time-bounded, so only the wildcard rule keeps break-glass out.
    let bounded = json!({"not_after": "2026-12-01T00:00:00Z", "max_token_ttl": "1h"});
    let wild = pol(
        "wild",
        vec![
            with(
                st("allow", &["user:alice"], &["*"], &["*"]),
                "conditions",
                bounded.clone(),
            ),
            with(
                st("allow", &["user:alice"], &["secrets:*"], &["*"]),
                "conditions",
                bounded,
            ),
        ],
    );
    let d = ask(
        std::slice::from_ref(&wild),
        "user:alice",
        Action::SecretsReadBreakGlass,
        "acme/prod/db",
    );
    assert!(!d.allowed, "{d}");
    for a in [
        Action::SecretsRead,
        Action::SecretsWrite,
        Action::SecretsRotate,
        Action::SecretsAdmin,
    ] {
        assert!(
            ask(std::slice::from_ref(&wild), "user:alice", a, "acme/prod/db").allowed,
            "{a}"
        );
    }

    let glass = pol(
        "glass",
        vec![with(
            st(
                "allow",
                &["user:alice"],
                &["secrets:read-break-glass"],
                &["acme/prod/*"],
            ),
            "conditions",
            json!({"not_after": "2026-12-01T00:00:00Z"}),
        )],
    );
    let d = ask(
        &[wild.clone(), glass.clone()],
        "user:alice",
        Action::SecretsReadBreakGlass,
        "acme/prod/db",
    );
    assert!(d.allowed && d.statement_label() == "glass#0", "{d}");

    // Deny wildcards do reach break-glass (fail closed).
    let deny_all = pol("deny-all", vec![st("deny", &["*"], &["*"], &["acme/prod/*"])]);
    let d = ask(
        &[glass.clone(), deny_all],
        "user:alice",
        Action::SecretsReadBreakGlass,
        "acme/prod/db",
    );
    assert!(!d.allowed && d.statement_label() == "deny-all#0", "{d}");

    // A stored policy that skipped validation cannot grant unbounded break-glass.
    let mut unbounded = glass;
    unbounded.statements[0].conditions = None;
    assert!(validate_policy(&unbounded).is_err());
    assert!(
        !ask(
            &[unbounded],
            "user:alice",
            Action::SecretsReadBreakGlass,
            "acme/prod/db"
        )
        .allowed
    );
}

#[test]
fn conditions_limit_time_token_ttl_and_region() {
    let s = st("allow", &["service:acme:api"], &["secrets:read"], &["acme/*"]);
    let timed = [pol(
        "t",
        vec![with(
            s.clone(),
            "conditions",
            json!({"not_after": "2026-12-01T00:00:00Z"}),
        )],
    )];
    let ttl = [pol(
        "t",
        vec![with(s.clone(), "conditions", json!({"max_token_ttl": "1h"}))],
    )];
    let region = [pol(
        "t",
        vec![with(s, "conditions", json!({"regions": ["eu-west", "us-east"]}))],
    )];
    let run = |policies: &[pb::Policy], lifetime: Option<u64>, region: &str, now_ms: u64| {
        let c = Caller {
            principal: "service:acme:api",
            groups: &[],
            token_lifetime_ms: lifetime,
        };
        let q = Query {
            action: Action::SecretsRead,
            resource: "acme/x",
            region,
            now_ms,
        };
        decide(policies, &c, &q).allowed
    };
    let h = Some(HOUR);
    for (name, policies, lifetime, region, now, want) in [
        ("before not_after", &timed, h, "eu-west", DEC_1 - 1, true),
        ("at not_after", &timed, h, "eu-west", DEC_1, false),
        ("after not_after", &timed, h, "eu-west", DEC_1 + 1, false),
        ("token at the ttl", &ttl, Some(HOUR), "eu-west", NOW, true),
        ("short token", &ttl, Some(1), "eu-west", NOW, true),
        ("token above the ttl", &ttl, Some(HOUR + 1), "eu-west", NOW, false),
        ("certificate identity", &ttl, None, "eu-west", NOW, false),
        ("listed region", &region, h, "us-east", NOW, true),
        ("other region", &region, h, "ap-south", NOW, false),
        ("no region", &region, h, "", NOW, false),
        ("look-alike region", &region, h, "eu-west ", NOW, false),
    ] {
        assert_eq!(run(policies, lifetime, region, now), want, "{name}");
    }
}

#[test]
fn globs_respect_segment_boundaries() {
    let p = [pol(
        "g",
        vec![st(
            "allow",
            &["user:alice"],
            &["secrets:read"],
            &["acme/*", "globex/prod*/db"],
        )],
    )];
    for (resource, want) in [
        ("acme/x", true),
        ("acme/a/b", true),
        ("acmecorp/x", false),
        ("acme", true), // listing the tenant lists acme/…
        ("globex/prod/db", true),
        ("globex/production/db", true),
        ("globex/prod/db2", false),
        ("globex/x/prod/db", false),
    ] {
        assert_eq!(
            ask(&p, "user:alice", Action::SecretsRead, resource).allowed,
            want,
            "{resource}"
        );
    }
}

#[test]
fn listings_need_a_glob_that_covers_them() {
    let p = [pol(
        "l",
        vec![st(
            "allow",
            &["user:alice"],
            &["secrets:read"],
            &["acme/prod/*", "globex/db"],
        )],
    )];
    for (resource, want) in [
        ("acme/prod/", true),
        ("acme/prod/x/", true),
        ("acme/prod", false), // a name: not matched by acme/prod/*
        ("acme/", false),
        ("acme", false),
        ("globex/db", true),
        ("globex/db/", false), // a grant of one secret does not list under it
        ("globex", false),
    ] {
        assert_eq!(
            ask(&p, "user:alice", Action::SecretsRead, resource).allowed,
            want,
            "{resource}"
        );
    }
    // An unvalidated stored glob that matches the prefix text but not what it lists.
    let mut stored = p[0].clone();
    stored.statements[0].resources = vec!["acme/".into(), "globex/db/".into()];
    assert!(!ask(&[stored.clone()], "user:alice", Action::SecretsRead, "acme").allowed);
    assert!(!ask(&[stored], "user:alice", Action::SecretsRead, "globex/db/").allowed);
}

#[test]
fn path_tricks_never_allow() {
    let p = [pol(
        "all",
        vec![
            st("allow", &["user:admin"], &["*"], &["*"]),
            st("allow", &["service:acme:api"], &["secrets:*"], &["acme/*"]),
        ],
    )];
    let long = format!("acme/{}", "a".repeat(600));
    let deep = vec!["a"; 20].join("/");
    for resource in [
        "acme/../globex/x",
        "acme/%2F..",
        "acme/%2Fglobex",
        "\u{0430}cme/x", // Cyrillic а
        "acme/\u{0445}",
        "acme//x",
        "/acme/x",
        "acme/./x",
        "Acme/x",
        "ACME/X",
        "acme/X",
        "acme/x ",
        " acme/x",
        "acme\\x",
        "acme/x\0",
        "acme/x\n",
        "acme/.hidden",
        "",
        "/",
        "//",
        long.as_str(),
        deep.as_str(),
    ] {
        for principal in ["user:admin", "service:acme:api"] {
            for a in [Action::SecretsRead, Action::SecretsWrite, Action::SecretsAdmin] {
                let d = ask(&p, principal, a, resource);
                assert!(!d.allowed, "{principal} {a} {resource:?}: {d}");
                assert!(d.explanation.contains("not a valid secret name"), "{d}");
            }
        }
    }
    // A trailing '/' is a listing prefix; a grant of the one secret does not cover it.
    let one = [pol(
        "one",
        vec![st("allow", &["service:acme:api"], &["secrets:*"], &["acme/x"])],
    )];
    assert!(ask(&one, "service:acme:api", Action::SecretsRead, "acme/x").allowed);
    assert!(!ask(&one, "service:acme:api", Action::SecretsRead, "acme/x/").allowed);
}

#[test]
fn tenants_never_reach_other_tenants() {
    let p = [pol(
        "wide",
        vec![
            st("allow", &["*"], &["secrets:*"], &["*"]),
            st(
                "allow",
                &["service:acme:api"],
                &["secrets:*"],
                &["globex/*", "globex/x", "acme*"],
            ),
            st("allow", &["group:globex:admins"], &["secrets:*"], &["globex/*"]),
        ],
    )];
    for resource in ["globex/x", "globex", "globex/", "acmecorp/x", "acme-eu/x"] {
        for a in [
            Action::SecretsRead,
            Action::SecretsWrite,
            Action::SecretsRotate,
            Action::SecretsAdmin,
        ] {
            let d = ask_as(&p, "service:acme:api", &["group:globex:admins"], a, resource);
            assert!(!d.allowed, "{a} {resource}: {d}");
            assert!(d.explanation.contains("tenant isolation"), "{d}");
            assert!(d.statement.is_none());
        }
    }
    assert!(ask(&p, "service:acme:api", Action::SecretsRead, "acme/x").allowed);
    assert!(ask(&p, "service:acme:api", Action::SecretsRead, "acme").allowed);
    // Platform principals are not tenant-limited.
    assert!(
        ask_as(
            &p,
            "user:alice",
            &["group:globex:admins"],
            Action::SecretsWrite,
            "globex/x"
        )
        .allowed
    );
}

#[test]
fn shared_secrets_need_explicit_grants() {
    let star = pol(
        "star",
        vec![st("allow", &["*"], &["secrets:read"], &["*", "sha*", "*/certs/*"])],
    );
    let certs = pol(
        "certs",
        vec![st("allow", &["*"], &["secrets:read"], &["shared/certs/*"])],
    );
    let all_shared = pol(
        "all-shared",
        vec![st("allow", &["*"], &["secrets:read"], &["shared/*"])],
    );
    let tenant = "service:acme:api";
    for (policies, resource, want) in [
        (vec![star.clone()], "shared/certs/ca", false),
        (vec![star.clone()], "shared", false),
        (vec![star.clone(), certs.clone()], "shared/certs/ca", true),
        (vec![certs.clone()], "shared/other/x", false),
        (vec![certs.clone()], "shared", false),
        (vec![all_shared.clone()], "shared", true),
        (vec![all_shared.clone()], "shared/", true),
    ] {
        let d = ask(&policies, tenant, Action::SecretsRead, resource);
        assert_eq!(
            d.allowed,
            want,
            "{resource} with {:?}: {d}",
            policies.iter().map(|p| &p.name).collect::<Vec<_>>()
        );
    }
    // Platform principals read shared secrets through `*`.
    assert!(ask(&[star], "user:alice", Action::SecretsRead, "shared/certs/ca").allowed);
    // A tenant-wide deny still reaches shared secrets.
    let deny = pol("deny", vec![st("deny", &[tenant], &["*"], &["*"])]);
    assert!(!ask(&[certs, deny], tenant, Action::SecretsRead, "shared/certs/ca").allowed);
}

#[test]
fn tenant_principals_never_get_platform_actions() {
    let p = [pol(
        "everything",
        vec![
            st("allow", &["*"], &["*"], &["*"]),
            st(
                "allow",
                &["service:acme:admin", "group:sre"],
                &["policy:admin", "cluster:admin", "audit:read", "drill:run"],
                &["*", "cluster", "audit", "drill", "kms", "policy/*", "token/*"],
            ),
        ],
    )];
    for (a, resource) in [
        (Action::PolicyAdmin, "policy/global-admin"),
        (Action::PolicyAdmin, "token/service:globex:api"),
        (Action::PolicyAdmin, "token/user:root-admin"),
        (Action::ClusterAdmin, "cluster"),
        (Action::ClusterAdmin, "kms"),
        (Action::AuditRead, "audit"),
        (Action::DrillRun, "drill"),
    ] {
        let d = ask_as(&p, "service:acme:admin", &["group:sre"], a, resource);
        assert!(!d.allowed, "{a} {resource}: {d}");
        assert!(
            d.explanation.contains("tenant isolation") && d.explanation.contains("platform action"),
            "{d}"
        );
        // The same grant works for a platform principal.
        assert!(
            ask_as(&p, "user:bob", &["group:sre"], a, resource).allowed,
            "{a} {resource}"
        );
    }
}

#[test]
fn platform_star_gets_everything_but_break_glass() {
    let p = [pol("root-like", vec![st("allow", &["user:alice"], &["*"], &["*"])])];
    for a in ALL_ACTIONS {
        let d = ask(&p, "user:alice", a, resource_for(a));
        assert_eq!(d.allowed, a != Action::SecretsReadBreakGlass, "{a}: {d}");
    }
    assert!(ask(&p, "user:alice", Action::ClusterAdmin, "token/service:acme:api").allowed);
    assert!(ask(&p, "user:alice", Action::SecretsRead, "shared/x").allowed);
}

#[test]
fn platform_resources_match_their_globs() {
    let p = [pol(
        "ops",
        vec![
            st(
                "allow",
                &["user:alice"],
                &["policy:admin"],
                &["policy/acme-*", "token/service:acme:*", "token/user:*"],
            ),
            st("allow", &["user:alice"], &["cluster:admin"], &["kms"]),
        ],
    )];
    for (a, resource, want) in [
        (Action::PolicyAdmin, "policy/acme-read", true),
        (Action::PolicyAdmin, "policy/globex-read", false),
        (Action::PolicyAdmin, "token/service:acme:api", true),
        (Action::PolicyAdmin, "token/service:globex:api", false),
        (Action::PolicyAdmin, "token/service:acme:API", false),
        // Token principals match part by part: `user:*` is a platform user, never a tenant's.
        (Action::PolicyAdmin, "token/user:bob", true),
        (Action::PolicyAdmin, "token/user:acme:dana", false),
        (Action::PolicyAdmin, "token/service:acme:api:x", false),
        (Action::PolicyAdmin, "policy/acme-../x", false),
        (Action::ClusterAdmin, "kms", true),
        (Action::ClusterAdmin, "cluster", false),
        (Action::ClusterAdmin, "acme/x", false),
        (Action::AuditRead, "audit", false),
    ] {
        assert_eq!(ask(&p, "user:alice", a, resource).allowed, want, "{a} {resource}");
    }
}

#[test]
fn principal_patterns_match_part_by_part() {
    let p = [pol(
        "who",
        vec![st(
            "allow",
            &["service:*", "*:globex:*", "group:acme:on*"],
            &["secrets:read"],
            &["*"],
        )],
    )];
    for (principal, groups, want) in [
        ("service:ci", &[][..], true),
        ("service:acme:api", &[], false), // service:* names platform services only
        ("user:globex:bob", &[], true),
        ("user:acme:bob", &["group:acme:oncall"][..], true),
        ("user:acme:bob", &["group:acme:dev"], false),
        ("user:acme:bob", &["group:acme:oncall:x", "GROUP:acme:oncall"], false), // malformed groups
        ("user:alice", &[], false),
    ] {
        let resource = if principal.contains("globex") {
            "globex/x"
        } else {
            "acme/x"
        };
        let d = ask_as(&p, principal, groups, Action::SecretsRead, resource);
        assert_eq!(d.allowed, want, "{principal} {groups:?}: {d}");
        if want && !groups.is_empty() {
            assert!(d.explanation.contains("(as group:acme:oncall)"), "{d}");
        }
    }
}

#[test]
fn odd_callers_and_stored_statements_fail_closed() {
    let p = [pol("all", vec![st("allow", &["*"], &["*"], &["*"])])];
    for principal in ["root", "", "Service:acme:api", "service:acme:api ", "service:shared:x"] {
        let d = ask(&p, principal, Action::SecretsRead, "acme/x");
        assert!(
            !d.allowed && d.explanation.contains("not a valid principal id"),
            "{principal:?}: {d}"
        );
    }
    let d = ask(&p, "user:alice", Action::Health, "node");
    assert!(!d.allowed && d.explanation.contains("not governed"), "{d}");

    // An effect other than allow counts as deny.
    let mut odd = pol("odd", vec![st("allow", &["*"], &["secrets:read"], &["acme/*"])]);
    odd.statements[0].effect = 0;
    assert!(
        !ask(
            &[p[0].clone(), odd.clone()],
            "user:alice",
            Action::SecretsRead,
            "acme/x"
        )
        .allowed
    );
    odd.statements[0].effect = 7;
    assert!(!ask(&[p[0].clone(), odd], "user:alice", Action::SecretsRead, "acme/x").allowed);
}

#[test]
fn hostile_inputs_never_panic() {
    let long = "a".repeat(100_000);
    let stars = "*a".repeat(300);
    let stored = pb::Policy {
        name: "unchecked".into(),
        statements: vec![pb::PolicyStatement {
            sid: "\u{1b}[31m".into(),
            effect: pb::Effect::Allow as i32,
            principals: vec!["".into(), ":::".into(), "*".into(), long.clone()],
            actions: vec!["".into(), "*".into(), "secrets:*".into(), long.clone()],
            resources: vec!["".into(), stars.clone(), "**".into(), "/".into(), long.clone()],
            conditions: None,
        }],
        ..Default::default()
    };
    let weird = [
        "",
        ":",
        "::::",
        "*",
        "user:*",
        "\u{0430}",
        "\u{202e}acme/x",
        "acme/\u{0}",
        long.as_str(),
        stars.as_str(),
        "token/",
        "policy/",
        "token/user:alice",
        "policy/p",
    ];
    let groups: Vec<String> = weird.iter().map(|s| s.to_string()).collect();
    let policies = [stored, pol("all", vec![st("allow", &["*"], &["*"], &["*"])])];
    for principal in weird.iter().chain(["user:alice", "service:acme:api"].iter()) {
        for resource in weird {
            for action in ALL_ACTIONS.iter().copied().chain([Action::Health]) {
                let c = Caller {
                    principal,
                    groups: &groups,
                    token_lifetime_ms: Some(u64::MAX),
                };
                let q = Query {
                    action,
                    resource,
                    region: resource,
                    now_ms: u64::MAX,
                };
                let d = decide(&policies, &c, &q);
                assert!(d.explanation.len() < 1000, "{d}");
                if d.allowed {
                    assert!(matches!(*principal, "user:alice" | "service:acme:api"), "{principal:?}");
                }
            }
        }
    }
    let e = parse_principal(&long).unwrap_err().to_string();
    assert!(e.len() < 300, "{e}");
}

#[test]
fn break_glass_requests_need_reason_and_ticket() {
    for (reason, ticket) in [
        ("database is down, paging the owner", "INC-123"),
        ("12345678", "a"),
        ("ünïcode réason", "JIRA:SEC-1.2_x"),
    ] {
        assert_eq!(check_break_glass(reason, ticket), Ok(()), "{reason:?} {ticket:?}");
    }
    let long_reason = "r".repeat(513);
    let long_ticket = "T".repeat(65);
    for (reason, ticket, why) in [
        ("short", "INC-1", "8 to 512"),
        ("        x", "INC-1", "8 to 512"),
        (long_reason.as_str(), "INC-1", "8 to 512"),
        ("a reason\nwith a newline", "INC-1", "control characters"),
        ("a reason \u{1b}[31m", "INC-1", "control characters"),
        ("a good reason", "", "ticket"),
        ("a good reason", "INC 123", "ticket"),
        ("a good reason", "INC/1", "ticket"),
        ("a good reason", "ІNC-1", "ticket"), // Cyrillic І
        ("a good reason", long_ticket.as_str(), "ticket"),
    ] {
        let e = check_break_glass(reason, ticket).expect_err(reason).to_string();
        assert!(e.contains(why), "{reason:?} {ticket:?}: {e}");
        assert!(!e.contains("good reason"), "the reason is not echoed: {e}");
    }
}
