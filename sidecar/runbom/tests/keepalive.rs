//! The gRPC receiver's `keepalive.enforcement_policy`, against a real HTTP/2 client (the `h2`
//! library, `tests/adversarial.py pings`): a client pinging more often than the policy allows
//! gets GOAWAY `ENHANCE_YOUR_CALM` (`too_many_pings`) and is disconnected, as grpc-go does;
//! one pinging within it keeps its connection, and ordinary gRPC clients are served.

use runbom_testkit::{SidecarConfig, TempDir, runbom_bin};
use serde_json::Value;

/// `ENHANCE_YOUR_CALM` (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u64 = 0xb;

fn pings(port: u16, count: u32, interval_ms: u32, open_stream: bool) -> Value {
    runbom_testkit::python::run_script_json(
        "adversarial.py",
        &[
            "pings",
            &port.to_string(),
            &count.to_string(),
            &interval_ms.to_string(),
            if open_stream { "1" } else { "0" },
        ],
    )
}

fn assert_calmed(result: &Value, after_ping: u64, what: &str) {
    assert_eq!(
        result["goaway"]["error_code"], ENHANCE_YOUR_CALM,
        "{what}: GOAWAY ENHANCE_YOUR_CALM: {result}"
    );
    assert_eq!(
        result["goaway"]["debug"], "too_many_pings",
        "{what}: {result}"
    );
    assert_eq!(
        result["goaway"]["after_ping"], after_ping,
        "{what}: the third strike (grpc-go's maxPingStrikes 2) ends it: {result}"
    );
    assert_eq!(result["closed"], true, "{what}: then closed: {result}");
}

#[test]
fn clients_pinging_more_often_than_the_enforcement_policy_get_goaway_and_are_closed() {
    let dir = TempDir::new("keepalive-enforcement");
    let cfg = SidecarConfig::new();
    let yaml = cfg.discarding_yaml(
        "        keepalive:\n          \
         enforcement_policy: { min_time: 500ms, permit_without_stream: false }\n",
        "",
    );
    let config = dir.write("runbom.yaml", &yaml);
    let runbom = runbom_testkit::Runbom::start(
        runbom_bin!(),
        &config,
        dir.path(),
        runbom_testkit::Ready::Admin(cfg.admin),
    );

    // A stream open, pings 50 ms apart (min_time 500 ms): the first is free, the next three
    // are strikes, the fourth ping ends the connection.
    let flood = pings(cfg.grpc, 10, 50, true);
    assert_calmed(&flood, 4, "pings 50 ms apart");
    assert_eq!(flood["acked"], 3, "the pings before are answered: {flood}");

    // A stream open, pings 700 ms apart: within the policy, all answered, connection kept.
    let polite = pings(cfg.grpc, 5, 700, true);
    assert_eq!(polite["goaway"], Value::Null, "{polite}");
    assert_eq!(polite["closed"], false, "{polite}");
    assert_eq!(polite["acked"], 5, "{polite}");

    // No stream open and `permit_without_stream: false`: even pings 700 ms apart are strikes
    // (a ping then needs 2 h since the previous one, as in grpc-go).
    let idle = pings(cfg.grpc, 10, 700, false);
    assert_calmed(&idle, 4, "pings without a stream");

    // An ordinary gRPC client (grpcio) is served on the same receiver.
    let good = runbom_testkit::python::run_script_json(
        "adversarial.py",
        &["grpcok", &cfg.grpc.to_string()],
    );
    assert_eq!(good["ok"], true, "{good}");

    let log = runbom.stop_ok();
    assert_eq!(
        log.matches("keepalive.enforcement_policy allows").count(),
        2,
        "each disconnection is logged:\n{log}"
    );
}

/// Without an `enforcement_policy` section grpc-go's defaults apply, as in the Collector
/// (`min_time` 5 min): a ping flood is ended as well.
#[test]
fn without_the_section_the_collectors_default_policy_applies() {
    let dir = TempDir::new("keepalive-default");
    let cfg = SidecarConfig::new();
    let config = dir.write("runbom.yaml", &cfg.discarding_yaml("", ""));
    let runbom = runbom_testkit::Runbom::start(
        runbom_bin!(),
        &config,
        dir.path(),
        runbom_testkit::Ready::Admin(cfg.admin),
    );
    assert_calmed(&pings(cfg.grpc, 10, 50, true), 4, "default policy");
    let good = runbom_testkit::python::run_script_json(
        "adversarial.py",
        &["grpcok", &cfg.grpc.to_string()],
    );
    assert_eq!(good["ok"], true, "{good}");
    let _ = runbom.stop_ok();
}
