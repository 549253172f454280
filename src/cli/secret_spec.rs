//! `coffer secret create` and `coffer secret update`: a secret's metadata and rotation policy
//! from flags, checked here with the model's own rules before anything is sent (the server
//! checks again). An update is a read-modify-write under compare-and-swap on the etag.

use serde_json::json;
use serde_json::Value;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::pb;
use coffer_model::rotation_policy;
use pb::RotationStrategy;

/// Metadata flags shared by `create` and `update` (an update changes only the flags given).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SpecArgs {
    /// The team that owns the secret (at most 128 bytes).
    #[arg(long)]
    owner_team: Option<String>,
    /// What the secret is for (at most 1024 bytes).
    #[arg(long)]
    description: Option<String>,
    /// A label KEY=VALUE (repeat the flag for more; at most 64).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Versions kept besides aliased ones (1-10000).
    #[arg(long)]
    max_versions: Option<u32>,
    /// Rotate every PERIOD (e.g. 30d, 12h, 15m, 10s; at least 1s).
    #[arg(long, value_name = "PERIOD")]
    rotation_period: Option<String>,
    /// Keep PREVIOUS enabled at least this long after a rotation (not longer than the period).
    #[arg(long, value_name = "DURATION")]
    overlap: Option<String>,
    /// manual (only the schedule: the secret becomes due), generate, or hook.
    #[arg(long)]
    strategy: Option<String>,
    /// For generate: length=N[,alphabet=alnum|alnum-symbols|lower-alnum|hex|digits] or
    /// bytes=N[,encoding=base64|base64url|hex]. Default: length=32,alphabet=alnum.
    #[arg(long, value_name = "SPEC")]
    generate_spec: Option<String>,
    /// For hook: the owner's rotator (https; http only to a loopback host).
    #[arg(long, value_name = "URL")]
    hook_url: Option<String>,
    /// Keep a retired PREVIOUS disabled this long before destroying it (default 7d).
    #[arg(long, value_name = "DURATION")]
    retention: Option<String>,
    /// Retire PREVIOUS at the latest this long after the overlap, even while it is read
    /// (default 7d).
    #[arg(long, value_name = "DURATION")]
    retire_deadline: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    name: String,
    #[command(flatten)]
    spec: SpecArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpdateArgs {
    name: String,
    #[command(flatten)]
    spec: SpecArgs,
    /// Remove a label (repeat the flag for more).
    #[arg(long = "remove-label", value_name = "KEY")]
    remove_labels: Vec<String>,
    /// Remove the rotation policy.
    #[arg(long, conflicts_with_all = ["rotation_period", "overlap", "strategy", "generate_spec", "hook_url", "retention", "retire_deadline"])]
    no_rotation: bool,
    /// Apply only if the secret's etag is still this one (as `describe` showed it). Without
    /// it, the update is applied to the secret as read now, re-read and re-applied if the
    /// secret changes in between.
    #[arg(long)]
    etag: Option<String>,
}

fn invalid(message: String) -> CliError {
    CliError::invalid(message)
}

/// `30d`, `12h`, `15m`, `10s`, `500ms` as milliseconds.
pub fn parse_duration(flag: &str, s: &str) -> Result<u64, CliError> {
    let bad = || {
        invalid(format!(
            "{flag} {s:?} is not a duration; use e.g. 30d, 12h, 15m, 10s or 500ms"
        ))
    };
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(per).ok_or_else(bad)
}

/// Milliseconds in the largest unit that divides them: `30d`, `90m`, `1500ms`.
pub fn format_duration(ms: u64) -> String {
    for (per, unit) in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")] {
        if ms != 0 && ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

fn parse_strategy(s: &str) -> Result<RotationStrategy, CliError> {
    match s {
        "manual" => Ok(RotationStrategy::Manual),
        "generate" => Ok(RotationStrategy::Generate),
        "hook" => Ok(RotationStrategy::Hook),
        _ => Err(invalid(format!("--strategy {s:?} is not manual, generate or hook"))),
    }
}

/// `length=32,alphabet=alnum` or `bytes=32,encoding=hex`.
pub fn parse_generate_spec(s: &str) -> Result<pb::GenerateSpec, CliError> {
    let usage = "use length=N[,alphabet=NAME] or bytes=N[,encoding=NAME]";
    let mut g = pb::GenerateSpec::default();
    for part in s.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            return Err(invalid(format!("--generate-spec {part:?} is not KEY=VALUE; {usage}")));
        };
        let number = || {
            v.parse::<u32>()
                .map_err(|_| invalid(format!("--generate-spec {k}={v:?} is not a number; {usage}")))
        };
        match k {
            "length" => g.length = number()?,
            "bytes" => g.bytes = number()?,
            "alphabet" => g.alphabet = v.to_string(),
            "encoding" => g.encoding = v.to_string(),
            _ => return Err(invalid(format!("--generate-spec has no key {k:?}; {usage}"))),
        }
    }
    Ok(g)
}

/// How a generate spec reads: `32 characters (alnum)`, `32 bytes (hex)`.
pub fn describe_generate_spec(g: &pb::GenerateSpec) -> String {
    if g.bytes != 0 {
        let e = if g.encoding.is_empty() { "base64" } else { &g.encoding };
        return format!("{} random bytes ({e})", g.bytes);
    }
    let n = if g.length == 0 { 32 } else { g.length };
    let a = if g.alphabet.is_empty() { "alnum" } else { &g.alphabet };
    format!("{n} characters ({a})")
}

impl SpecArgs {
    fn touches_rotation(&self) -> bool {
        self.rotation_period.is_some()
            || self.overlap.is_some()
            || self.strategy.is_some()
            || self.generate_spec.is_some()
            || self.hook_url.is_some()
            || self.retention.is_some()
            || self.retire_deadline.is_some()
    }

    /// `base` with these flags applied, checked by the model's rules.
    fn apply_to(&self, mut spec: pb::SecretSpec, remove_labels: &[String]) -> Result<pb::SecretSpec, CliError> {
        if let Some(o) = &self.owner_team {
            spec.owner_team = o.clone();
        }
        if let Some(d) = &self.description {
            spec.description = d.clone();
        }
        for k in remove_labels {
            spec.labels.remove(k);
        }
        for l in &self.labels {
            let Some((k, v)) = l.split_once('=') else {
                return Err(invalid(format!("--label {l:?} is not KEY=VALUE")));
            };
            spec.labels.insert(k.to_string(), v.to_string());
        }
        if let Some(m) = self.max_versions {
            if m == 0 {
                return Err(invalid("--max-versions must be 1 to 10000".into()));
            }
            spec.max_versions = m;
        }
        if self.touches_rotation() {
            spec.rotation = Some(self.rotation(spec.rotation.take())?);
        }
        coffer_model::spec::validate(&spec).map_err(|e| match e {
            coffer_model::error::ApplyError::Model(m) => invalid(m.message),
            coffer_model::error::ApplyError::Io(io) => CliError::new(io.to_string()),
        })?;
        Ok(spec)
    }

    fn rotation(&self, base: Option<pb::RotationPolicy>) -> Result<pb::RotationPolicy, CliError> {
        let mut r = match (base, &self.rotation_period) {
            (Some(r), _) => r,
            (None, Some(_)) => pb::RotationPolicy::default(),
            (None, None) => {
                return Err(invalid(
                    "--rotation-period is required to give the secret a rotation policy".into(),
                ))
            }
        };
        if let Some(p) = &self.rotation_period {
            r.period_ms = parse_duration("--rotation-period", p)?;
        }
        if let Some(o) = &self.overlap {
            r.overlap_ms = parse_duration("--overlap", o)?;
        }
        if let Some(d) = &self.retention {
            r.retention_ms = parse_duration("--retention", d)?;
        }
        if let Some(d) = &self.retire_deadline {
            r.retire_deadline_ms = parse_duration("--retire-deadline", d)?;
        }
        let strategy = match (&self.strategy, &self.generate_spec, &self.hook_url) {
            (Some(s), _, _) => parse_strategy(s)?,
            (None, Some(_), _) => RotationStrategy::Generate,
            (None, None, Some(_)) => RotationStrategy::Hook,
            (None, None, None) => rotation_policy::strategy(&r),
        };
        r.strategy = strategy as i32;
        if let Some(g) = &self.generate_spec {
            r.generate = Some(parse_generate_spec(g)?);
        }
        if let Some(u) = &self.hook_url {
            r.hook_url = u.clone();
        }
        // Settings of another strategy do not carry over a change of strategy.
        if strategy != RotationStrategy::Generate {
            r.generate = None;
        }
        if strategy != RotationStrategy::Hook {
            r.hook_url.clear();
        }
        Ok(r)
    }
}

/// The rotation policy as JSON (`null` without one).
pub fn rotation_json(r: &Option<pb::RotationPolicy>) -> Value {
    let Some(r) = r else {
        return Value::Null;
    };
    let strategy = rotation_policy::strategy(r);
    json!({
        "period_ms": r.period_ms,
        "overlap_ms": r.overlap_ms,
        "strategy": rotation_policy::strategy_name(strategy),
        "generate": (strategy == RotationStrategy::Generate)
            .then(|| describe_generate_spec(&r.generate.clone().unwrap_or_default())),
        "hook_url": (!r.hook_url.is_empty()).then(|| r.hook_url.clone()),
        "retention_ms": rotation_policy::retention_ms(r),
        "retire_deadline_ms": rotation_policy::retire_deadline_ms(r),
    })
}

/// The rotation policy as `describe` table rows.
pub fn rotation_rows(r: &Option<pb::RotationPolicy>) -> Vec<Vec<String>> {
    let Some(r) = r else {
        return vec![vec!["rotation".into(), "none".into()]];
    };
    let strategy = rotation_policy::strategy(r);
    let how = match strategy {
        RotationStrategy::Generate => format!(
            "generate {}",
            describe_generate_spec(&r.generate.clone().unwrap_or_default())
        ),
        RotationStrategy::Hook => format!("hook {}", r.hook_url),
        _ => "manual".into(),
    };
    vec![
        vec![
            "rotation".into(),
            format!(
                "every {}, overlap {}, {how}",
                format_duration(r.period_ms),
                format_duration(r.overlap_ms)
            ),
        ],
        vec![
            "retirement".into(),
            format!(
                "destroyed {} after retiring; retired at the latest {} after the overlap",
                format_duration(rotation_policy::retention_ms(r)),
                format_duration(rotation_policy::retire_deadline_ms(r))
            ),
        ],
    ]
}

fn print_metadata_write(g: &Global, what: &str, r: &pb::WriteResponse) {
    match g.output {
        Output::Json => output::print_json(&json!({
            "name": r.name,
            "etag": r.etag,
            "log_index": r.log_index,
            "token": r.token,
        })),
        Output::Table => output::say(format!("{what} {} (etag {})", r.name, r.etag)),
    }
}

pub async fn create(g: &Global, a: CreateArgs) -> Result<(), CliError> {
    let spec = a.spec.apply_to(pb::SecretSpec::default(), &[])?;
    let client = connect(g).await?;
    let r = client
        .secrets
        .clone()
        .create_secret(pb::CreateSecretRequest {
            name: a.name,
            spec: Some(spec),
        })
        .await?
        .into_inner();
    print_metadata_write(g, "created", &r);
    Ok(())
}

/// The secret's metadata as the leader has it now (a linearizable read), for a
/// read-modify-write or a compare-and-swap.
pub async fn describe_now(s: &mut crate::client::SecretsClient, name: &str) -> Result<pb::SecretInfo, CliError> {
    Ok(s.describe_secret(pb::DescribeSecretRequest {
        name: name.to_string(),
        consistency: Some(pb::ReadConsistency {
            mode: Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {})),
        }),
    })
    .await?
    .into_inner()
    .secret
    .unwrap_or_default())
}

/// Attempts of a read-modify-write that keeps meeting concurrent changes.
const UPDATE_ATTEMPTS: usize = 5;

pub async fn update(g: &Global, a: UpdateArgs) -> Result<(), CliError> {
    let patch_only = |base: pb::SecretSpec| a.spec.apply_to(base, &a.remove_labels);
    // Flags are checked on an empty spec first, so bad input fails before any connection
    // (a rotation flag without a policy to change is checked against the secret's own).
    if !a.spec.touches_rotation() || a.spec.rotation_period.is_some() {
        patch_only(pb::SecretSpec::default())?;
    }
    let client = connect(g).await?;
    let mut s = client.secrets.clone();
    // With --etag or a caller's request id the update is tried once: a re-read would go past
    // the etag the caller named, and a request id answers every retry with its first outcome.
    let attempts = if a.etag.is_some() || g.request_id.is_some() {
        1
    } else {
        UPDATE_ATTEMPTS
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let info = describe_now(&mut s, &a.name).await?;
        let base = pb::SecretSpec {
            owner_team: info.owner_team,
            description: info.description,
            labels: info.labels,
            max_versions: 0,
            rotation: if a.no_rotation { None } else { info.rotation },
        };
        let spec = patch_only(base)?;
        let expected_etag = a.etag.clone().unwrap_or(info.etag);
        match s
            .update_secret(pb::UpdateSecretRequest {
                name: a.name.clone(),
                spec: Some(spec),
                expected_etag,
            })
            .await
        {
            Ok(r) => {
                print_metadata_write(g, "updated", &r.into_inner());
                return Ok(());
            }
            Err(e) if attempt < attempts && crate::error::code_of(&e) == Some("etag_mismatch") => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (s, ms) in [
            ("30d", 2_592_000_000),
            ("36h", 129_600_000),
            ("15m", 900_000),
            ("1s", 1000),
            ("500ms", 500),
        ] {
            assert_eq!(parse_duration("--overlap", s).unwrap(), ms);
            assert_eq!(format_duration(ms), s);
        }
        for bad in ["", "30", "d", "1.5h", "-1d", "3w", "99999999999999999999d"] {
            let e = parse_duration("--overlap", bad).unwrap_err();
            assert!(e.message.starts_with("--overlap"), "{bad}: {}", e.message);
            assert_eq!(e.kind.as_deref(), Some("invalid_argument"));
        }
    }

    fn args(f: impl FnOnce(&mut SpecArgs)) -> SpecArgs {
        let mut a = SpecArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn flags_build_a_checked_spec_and_bad_ones_name_their_field() {
        let a = args(|a| {
            a.owner_team = Some("payments".into());
            a.labels = vec!["env=prod".into()];
            a.rotation_period = Some("30d".into());
            a.overlap = Some("24h".into());
            a.generate_spec = Some("bytes=32,encoding=hex".into());
        });
        let spec = a.apply_to(pb::SecretSpec::default(), &[]).unwrap();
        let r = spec.rotation.unwrap();
        assert_eq!(r.strategy, RotationStrategy::Generate as i32);
        assert_eq!((r.period_ms, r.overlap_ms), (2_592_000_000, 86_400_000));
        assert_eq!(r.generate.unwrap().bytes, 32);
        let refused = |f: fn(&mut SpecArgs)| args(f).apply_to(pb::SecretSpec::default(), &[]).unwrap_err().message;
        let m = refused(|a| {
            a.rotation_period = Some("1h".into());
            a.overlap = Some("2h".into());
        });
        assert!(
            m.contains("rotation.overlap_ms") && m.contains("rotation.period_ms"),
            "{m}"
        );
        assert!(refused(|a| {
            a.rotation_period = Some("1h".into());
            a.strategy = Some("cron".into());
        })
        .contains("--strategy"));
        assert!(refused(|a| {
            a.rotation_period = Some("1h".into());
            a.generate_spec = Some("length=3".into());
        })
        .contains("rotation.generate.length"));
        assert!(refused(|a| {
            a.rotation_period = Some("1h".into());
            a.generate_spec = Some("size=3".into());
        })
        .contains("--generate-spec"));
        assert!(refused(|a| {
            a.rotation_period = Some("1h".into());
            a.hook_url = Some("http://rotator.acme.internal/".into());
        })
        .contains("rotation.hook_url"));
        assert!(refused(|a| a.overlap = Some("1h".into())).contains("--rotation-period is required"));
        assert!(refused(|a| a.labels = vec!["nokey".into()]).contains("--label"));
    }

    #[test]
    fn an_update_changes_only_the_flags_given_and_a_new_strategy_drops_the_old_settings() {
        let base = pb::SecretSpec {
            owner_team: "payments".into(),
            labels: [
                ("env".to_string(), "prod".to_string()),
                ("tier".to_string(), "1".to_string()),
            ]
            .into_iter()
            .collect(),
            rotation: Some(pb::RotationPolicy {
                period_ms: 3_600_000,
                overlap_ms: 60_000,
                strategy: RotationStrategy::Generate as i32,
                generate: Some(pb::GenerateSpec {
                    length: 40,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = args(|a| a.overlap = Some("5m".into()));
        let s = a.apply_to(base.clone(), &["tier".to_string()]).unwrap();
        assert_eq!(s.owner_team, "payments");
        assert_eq!(s.labels.keys().collect::<Vec<_>>(), ["env"]);
        let r = s.rotation.unwrap();
        assert_eq!((r.period_ms, r.overlap_ms), (3_600_000, 300_000));
        assert_eq!(r.generate.unwrap().length, 40);
        let a = args(|a| a.hook_url = Some("https://rotator.acme.internal/rotate".into()));
        let r = a.apply_to(base, &[]).unwrap().rotation.unwrap();
        assert_eq!(r.strategy, RotationStrategy::Hook as i32);
        assert!(r.generate.is_none());
    }
}
