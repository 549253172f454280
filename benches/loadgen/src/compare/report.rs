//! The Markdown tables and the run's provenance (machine, commit).

use std::collections::BTreeMap;

use serde_json::json;

use super::client_check::AGREEMENT;
use super::plan::Plan;
use super::plan::CLIENT_BOUND_SHARE;
use super::summary::median;
use super::summary::Medians;
use super::summary::SummaryKey;
use super::summary::TARGETS;
use crate::target::System;
use crate::target::Workload;

pub(super) fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "temp_dir": std::env::temp_dir(),
    })
}

pub(super) fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `intro`, then a Markdown table of `header` (its separator row drawn from it) and `rows`;
/// nothing when there is no row.
fn table(md: &mut String, intro: &str, header: &str, rows: &[String]) {
    use std::fmt::Write;
    if rows.is_empty() {
        return;
    }
    let columns = header.matches('|').count().saturating_sub(1);
    let _ = writeln!(md, "\n{intro}\n\n{header}\n|{}", "---|".repeat(columns));
    for r in rows {
        let _ = writeln!(md, "{r}");
    }
}

/// Every (workload, value size, connections, in flight) cell of the plan, in table order.
fn cells<'a>(
    plan: &'a Plan,
    levels: &'a [(usize, usize)],
) -> impl Iterator<Item = (Workload, usize, usize, usize)> + 'a {
    plan.workloads.iter().flat_map(move |&w| {
        plan.sizes
            .iter()
            .flat_map(move |&size| levels.iter().map(move |&(c, i)| (w, size, c, i)))
    })
}

/// What a row of two cells says beside its label: " (errors: a 3, b 0)" when either had
/// errors, and " (client-bound: a)" when the load generator used more than a quarter of the
/// machine in a run of one of them.
fn notes(a: (&str, Medians), b: (&str, Medians)) -> String {
    let mut out = String::new();
    if a.1.errors + b.1.errors > 0 {
        out += &format!(" (errors: {} {}, {} {})", a.0, a.1.errors, b.0, b.1.errors);
    }
    let bound: Vec<&str> = [a, b]
        .iter()
        .filter(|(_, m)| m.client_share_max > CLIENT_BOUND_SHARE)
        .map(|(n, _)| *n)
        .collect();
    if !bound.is_empty() {
        out += &format!(" (**client-bound**: {})", bound.join(", "));
    }
    out
}

/// Coffer beside OpenBao's KV v2, cell by cell (reads on its active node and on a standby).
fn openbao_table(md: &mut String, s: &BTreeMap<SummaryKey, Medians>, levels: &[(usize, usize)], plan: &Plan) {
    let mut rows = Vec::new();
    for (w, size, c, i) in cells(plan, levels) {
        let get = |sys| s.get(&(sys, w, size, c, i)).copied();
        let (Some(a), Some(b)) = (get(System::Coffer), get(System::OpenBao)) else {
            continue;
        };
        let standby = get(System::OpenBaoStandby);
        let errs = notes(("coffer", a), ("openbao", b));
        rows.push(format!(
            "| {} / {}{errs} | {size} B | {c}x{i} | {} | {} |",
            w.label(System::Coffer),
            w.label(System::OpenBao),
            pair_columns(&a, &b, format!("{:.1}x", a.ops / b.ops)),
            standby.map(|m| fmt_ops(m.ops)).unwrap_or_default(),
        ));
    }
    table(
        md,
        "Coffer beside OpenBao (3 nodes, integrated Raft, file audit device, KV v2, a non-root token; its HTTP/1.1 JSON API):",
        "| workload (coffer / openbao) | value | conns x in flight | coffer ops/s | openbao ops/s | coffer/openbao | coffer p50 / p99 ms | openbao p50 / p99 ms | server CPU µs/op coffer / openbao | openbao standby ops/s |",
        &rows,
    );
}

/// Bytes on disk per write, by part.
fn disk_table(md: &mut String, doc: &serde_json::Value) {
    use std::fmt::Write;
    let Some(rows) = doc["disk"].as_array().filter(|a| !a.is_empty()) else {
        return;
    };
    let _ = writeln!(
        md,
        "\nBytes on disk per write ({} writes of {} B over the preloaded names, summed over 3 members, measured {} s after the last write):\n",
        rows[0]["writes"], rows[0]["value_bytes"], rows[0]["settle_secs"]
    );
    let _ = writeln!(md, "| system | bytes per write | by part | total after (MB) |");
    let _ = writeln!(md, "|---|---|---|---|");
    for r in rows {
        let parts: Vec<String> = r["bytes_per_write_by_part"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", v.as_f64().unwrap_or(f64::NAN)))
                    .collect()
            })
            .unwrap_or_default();
        let after: u64 = r["bytes_after"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} |",
            r["system"].as_str().unwrap_or("?"),
            fmt_ops(r["bytes_per_write"].as_f64().unwrap_or(f64::NAN)),
            parts.join(", "),
            after as f64 / 1e6,
        );
    }
}

/// The load generator beside h2load on one name.
fn client_check_table(md: &mut String, doc: &serde_json::Value) {
    use std::fmt::Write;
    let Some(rows) = doc["client_check"].as_array().filter(|a| !a.is_empty()) else {
        return;
    };
    let _ = writeln!(
        md,
        "\nClient check: the load generator beside h2load (C, nghttp2) on one name and the same encoded request, 10x10 against one member, alternating, medians:\n"
    );
    let _ = writeln!(
        md,
        "| system | read | h2load ops/s | coffer-loadgen ops/s | loadgen/h2load | agree (±{:.0}%) |",
        AGREEMENT * 100.0
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} B | {} | {} | {:.2}x | {} |",
            r["system"].as_str().unwrap_or("?"),
            r["value_bytes"],
            fmt_ops(r["median_h2load"].as_f64().unwrap_or(f64::NAN)),
            fmt_ops(r["median_loadgen"].as_f64().unwrap_or(f64::NAN)),
            r["loadgen_vs_h2load"].as_f64().unwrap_or(f64::NAN),
            if r["agree"].as_bool() == Some(true) {
                "yes"
            } else {
                "**no**"
            },
        );
    }
}

/// The columns every side-by-side table shares for two cells `a` and `b`: ops/s of each,
/// `ratio`, p50 / p99 of each, server CPU per request of each.
fn pair_columns(a: &Medians, b: &Medians, ratio: String) -> String {
    format!(
        "{} | {} | {ratio} | {} / {} | {} / {} | {:.0} / {:.0}",
        fmt_ops(a.ops),
        fmt_ops(b.ops),
        fmt_ms(a.p50),
        fmt_ms(a.p99),
        fmt_ms(b.p50),
        fmt_ms(b.p99),
        a.cpu_us_per_op,
        b.cpu_us_per_op,
    )
}

fn fmt_ops(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.0}")
    }
}

fn fmt_ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

/// Coffer's reads over HTTP/JSON beside the same reads over gRPC, cell by cell.
fn http_table(md: &mut String, s: &BTreeMap<SummaryKey, Medians>, levels: &[(usize, usize)], plan: &Plan) {
    let mut rows = Vec::new();
    for (w, size, c, i) in cells(plan, levels) {
        let get = |sys| s.get(&(sys, w, size, c, i)).copied();
        let (Some(g), Some(h)) = (get(System::Coffer), get(System::CofferHttp)) else {
            continue;
        };
        let errs = notes(("gRPC", g), ("HTTP", h));
        rows.push(format!(
            "| {}{errs} | {size} B | {c}x{i} | {} |",
            w.label(System::Coffer),
            pair_columns(&g, &h, format!("{:.2}x", h.ops / g.ops)),
        ));
    }
    table(
        md,
        "Coffer's reads through the HTTP/JSON API (HTTP/1.1 keep-alive, one request per connection at a time) beside gRPC:",
        "| read | value | conns x in flight | gRPC ops/s | HTTP ops/s | HTTP/gRPC | gRPC p50 / p99 ms | HTTP p50 / p99 ms | server CPU µs/op gRPC / HTTP |",
        &rows,
    );
}

pub(super) fn markdown(
    doc: &serde_json::Value,
    s: &BTreeMap<SummaryKey, Medians>,
    levels: &[(usize, usize)],
    plan: &Plan,
) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Run {} on {} CPUs ({}), etcd {}, coffer {}; {} runs per cell of {} s after {} s warm-up, medians; \
         `make bench-compare`.\n",
        doc["date"].as_str().unwrap_or(""),
        doc["machine"]["cpus"],
        doc["machine"]["cpu_model"].as_str().unwrap_or("?"),
        doc["versions"]["etcd"].as_str().unwrap_or("?"),
        doc["versions"]["coffer_commit"].as_str().unwrap_or("?"),
        plan.runs,
        plan.secs,
        plan.warmup_secs,
    );
    let _ = writeln!(
        md,
        "| ratio (10x10, {} B, medians) | measured | target | met |",
        doc["ratios"]["value_bytes"]
    );
    let _ = writeln!(md, "|---|---|---|---|");
    for (name, goal, t) in TARGETS {
        let got = doc["ratios"][name].as_f64();
        let _ = writeln!(
            md,
            "| `{name}` | {} | {} {t} | {} |",
            got.map(|g| format!("{g:.2}x")).unwrap_or("-".into()),
            goal.sign(),
            match got {
                Some(g) if goal.met(g, t) => "yes",
                Some(_) => "**no**",
                None => "-",
            }
        );
    }
    let _ = writeln!(
        md,
        "\n| workload (coffer / etcd) | value | conns x in flight | coffer ops/s | etcd ops/s | coffer/etcd | coffer p50 / p99 ms | etcd p50 / p99 ms | server CPU µs/op coffer / etcd | client CPU µs/op coffer / etcd | echo ops/s | coffer/echo |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (w, size, c, i) in cells(plan, levels) {
        let get = |sys| s.get(&(sys, w, size, c, i)).copied();
        let (Some(a), Some(b)) = (get(System::Coffer), get(System::Etcd)) else {
            continue;
        };
        let echo = get(System::Echo);
        let errs = notes(("coffer", a), ("etcd", b));
        let _ = writeln!(
            md,
            "| {} / {}{errs} | {size} B | {c}x{i} | {} | {:.0} / {:.0} | {} | {} |",
            w.label(System::Coffer),
            w.label(System::Etcd),
            pair_columns(&a, &b, format!("{:.2}x", a.ops / b.ops)),
            a.client_cpu_us_per_op,
            b.client_cpu_us_per_op,
            echo.map(|e| fmt_ops(e.ops)).unwrap_or("".into()),
            echo.map(|e| format!("{:.2}x", a.ops / e.ops)).unwrap_or("".into()),
        );
    }
    http_table(&mut md, s, levels, plan);
    openbao_table(&mut md, s, levels, plan);
    client_check_table(&mut md, doc);
    disk_table(&mut md, doc);
    if let Some(open) = doc["open_loop"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(
            md,
            "\nOpen loop (fixed arrival rate, latency from each request's intended start), medians over runs:\n"
        );
        let _ = writeln!(
            md,
            "| workload | value | rate/s | system | p50 ms | p99 ms | p99.9 ms | max ms | shed |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        let mut groups: BTreeMap<(String, String), Vec<&serde_json::Value>> = BTreeMap::new();
        for r in open {
            groups
                .entry((r["workload"].to_string(), r["system"].to_string()))
                .or_default()
                .push(r);
        }
        for ((w, sys), rs) in groups {
            let q = |k: &str| {
                median(
                    rs.iter()
                        .filter_map(|r| r["outcome"]["latency_us"][k].as_f64())
                        .collect(),
                )
            };
            let _ = writeln!(
                md,
                "| {} | {} B | {} | {} | {} | {} | {} | {} | {} |",
                w.trim_matches('"'),
                rs[0]["value_bytes"],
                rs[0]["outcome"]["target_rate"],
                sys.trim_matches('"'),
                fmt_ms(q("p50")),
                fmt_ms(q("p99")),
                fmt_ms(q("p999")),
                fmt_ms(q("max")),
                rs.iter().filter_map(|r| r["outcome"]["shed"].as_u64()).sum::<u64>(),
            );
        }
    }
    if let Some(group) = doc["group_commit"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(
            md,
            "\nGroup commit (leader, {} B writes, 3 s):\n",
            plan.sizes.first().unwrap_or(&256)
        );
        let _ = writeln!(
            md,
            "| writers | system | writes/s | Raft entries | WAL fsyncs | entries per fsync |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for g in group {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                g["writers"],
                g["system"].as_str().unwrap_or("?"),
                fmt_ops(g["writes_per_sec"].as_f64().unwrap_or(f64::NAN)),
                fmt_ops(g["leader_entries"].as_f64().unwrap_or(f64::NAN)),
                fmt_ops(g["leader_wal_fsyncs"].as_f64().unwrap_or(f64::NAN)),
                g["entries_per_fsync"],
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_draws_its_separator_from_its_header_and_an_empty_one_is_left_out() {
        let mut md = String::new();
        table(&mut md, "Intro:", "| a | b | c |", &[]);
        assert_eq!(md, "");
        table(&mut md, "Intro:", "| a | b | c |", &["| 1 | 2 | 3 |".into()]);
        assert_eq!(md, "\nIntro:\n\n| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n");
    }
}
