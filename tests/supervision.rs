//! Background task supervision: a replica whose delivery task ends (here: panics, through
//! the hidden test hook `--fail-task`) must not stay ready while delivering nothing. It
//! logs which task ended and exits non-zero, so the orchestrator restarts it and the load
//! balancer stops sending it clients.

mod support;

use std::time::Duration;

use support::{Gateway, run_bounded};
use tokio::time::{Instant, sleep};

#[tokio::test]
async fn a_replica_whose_delivery_task_ends_exits_non_zero_and_says_why() {
    run_bounded(Duration::from_secs(30), async {
        let mut gw = Gateway::start(&["--fail-task", "delivery:1500ms"]).await;
        gw.wait_status("/readyz", 200, Duration::from_secs(5)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = gw.exit_status() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running 10 s after its delivery task panicked\n{}",
                gw.stderr_tail()
            );
            sleep(Duration::from_millis(50)).await;
        };
        // Let the stderr reader take the last lines.
        sleep(Duration::from_millis(200)).await;
        let log = gw.stderr_tail();
        assert!(!status.success(), "exit status {status}\n{log}");
        assert!(
            log.contains("background task ended") && log.contains("delivery"),
            "no log line naming the task:\n{log}"
        );
    })
    .await;
}

#[tokio::test]
async fn without_the_hook_the_replica_keeps_running() {
    run_bounded(Duration::from_secs(30), async {
        let mut gw = Gateway::start(&[]).await;
        gw.wait_status("/readyz", 200, Duration::from_secs(5)).await;
        sleep(Duration::from_secs(2)).await;
        gw.assert_running();
        let (status, _) = gw.get("/readyz").await.expect("GET /readyz");
        assert_eq!(status, 200);
    })
    .await;
}
