//! Property test (issue 4): no sequence of join / leave / grant / revoke lets a socket
//! receive a room's message after its user lost that room.
//!
//! It drives the real gateway (handlers, membership, revocation, delivery) in process:
//! socketioxide's dummy sockets instead of the network, the in-process backplane, and a
//! permission source the test changes between steps (as an operator changes Redis before
//! `wsgate revoke`). A model says which socket is in which room; after every publish each
//! socket must have received the message exactly when the model says it is a member.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt};
use proptest::prelude::*;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use tokio::sync::mpsc;
use wsgate::{
    auth::{Identity, TokenTable},
    authz::Authorizer,
    backplane::{Args, Broadcast, Control, memory::MemoryBackplane},
    gateway::{Gateway, IdentityLimits, deliver_broadcast, revoke},
};

const USERS: usize = 2;
const ROOMS: [&str; 2] = ["r0", "r1"];
/// Socket i belongs to user SOCKET_USER[i].
const SOCKET_USER: [usize; 3] = [0, 0, 1];

/// Grants the test changes; answers after a yield, as a remote source would.
#[derive(Default)]
struct Grants(Mutex<HashSet<(String, String)>>);

impl Grants {
    fn set(&self, user: usize, room: &str, on: bool) {
        let key = (format!("u{user}"), room.to_owned());
        let mut g = self.0.lock().unwrap();
        if on {
            g.insert(key);
        } else {
            g.remove(&key);
        }
    }
    fn has(&self, user: &str, room: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .contains(&(user.to_owned(), room.to_owned()))
    }
}

/// The gateway's handle on the grants the test keeps changing.
struct Source(Arc<Grants>);

impl Authorizer for Source {
    fn may_join<'a>(&'a self, identity: &'a Identity, project_id: &'a str) -> BoxFuture<'a, bool> {
        async move {
            tokio::task::yield_now().await;
            self.0.has(&identity.user_id, project_id)
        }
        .boxed()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Grant(usize, usize),
    Join(usize, usize),
    Leave(usize, usize),
    /// Remove the grant, then revoke that project (`true`) or everything lost (`false`).
    RemoveAndRevoke(usize, usize, bool),
    Publish(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SOCKET_USER.len();
    let u = 0..USERS;
    let r = 0..ROOMS.len();
    prop_oneof![
        (u.clone(), r.clone()).prop_map(|(u, r)| Op::Grant(u, r)),
        (s.clone(), r.clone()).prop_map(|(s, r)| Op::Join(s, r)),
        (s, r.clone()).prop_map(|(s, r)| Op::Leave(s, r)),
        (u, r.clone(), any::<bool>()).prop_map(|(u, r, p)| Op::RemoveAndRevoke(u, r, p)),
        r.prop_map(Op::Publish),
    ]
}

type Packets = mpsc::Receiver<engineioxide::Packet>;

/// The next Socket.IO event packet (`2[...]`) sent to a dummy socket, within 2 s.
async fn next_event(rx: &mut Packets) -> Option<(String, Vec<Value>)> {
    loop {
        let p = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .ok()??;
        let engineioxide::Packet::Message(text) = p else {
            continue;
        };
        let text: &str = &text;
        let Some(body) = text
            .strip_prefix('2')
            .map(|b| b.trim_start_matches(char::is_numeric))
        else {
            continue;
        };
        if let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(body) {
            let name = items.remove(0).as_str().unwrap_or_default().to_owned();
            return Some((name, items));
        }
    }
}

/// Every event queued for a dummy socket right now.
fn drain(rx: &mut Packets) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    while let Ok(p) = rx.try_recv() {
        let engineioxide::Packet::Message(text) = p else {
            continue;
        };
        let text: &str = &text;
        if let Some(body) = text.strip_prefix('2')
            && let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(body)
        {
            let name = items.remove(0).as_str().unwrap_or_default().to_owned();
            out.push((name, items));
        }
    }
    out
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (overflow, _reports) = wsgate::gateway::Overflow::channel();
    let (_svc, io) = SocketIo::builder()
        .with_adapter::<wsgate::gateway::Adapter>(overflow)
        .build_svc();
    let grants = Arc::new(Grants::default());
    let (backplane, _inbound) = MemoryBackplane::new();
    let auth = TokenTable::new((0..USERS).map(|u| (format!("t{u}"), format!("u{u}"))));
    let gw = Gateway::with_limits(
        Arc::new(auth),
        Arc::new(Source(grants.clone())),
        Arc::new(backplane),
        IdentityLimits::default(),
    );
    gw.attach(&io);
    let mut socks = Vec::new();
    for &u in &SOCKET_USER {
        let (tx, rx) = io
            .new_dummy_sock("/", json!({"token": format!("t{u}")}))
            .await;
        socks.push((tx, rx));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (_, rx) in socks.iter_mut() {
        drain(rx);
    }
    // The model: which socket is in which room.
    let mut member = vec![[false; ROOMS.len()]; SOCKET_USER.len()];

    for op in ops {
        match op {
            Op::Grant(u, r) => grants.set(u, ROOMS[r], true),
            Op::Join(s, r) | Op::Leave(s, r) => {
                let join = matches!(op, Op::Join(..));
                let event = if join {
                    "join_project"
                } else {
                    "leave_project"
                };
                let packet = format!("2[\"{event}\",{{\"projectId\":\"{}\"}}]", ROOMS[r]);
                let (tx, rx) = &mut socks[s];
                tx.send(engineioxide::Packet::Message(packet.into()))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let (name, _) = next_event(rx)
                    .await
                    .ok_or_else(|| TestCaseError::fail(format!("no answer to {op:?}")))?;
                let allowed = !join || grants.has(&format!("u{}", SOCKET_USER[s]), ROOMS[r]);
                prop_assert_eq!(&name, if allowed { event } else { "exception" }, "{:?}", op);
                member[s][r] = join && allowed;
            }
            Op::RemoveAndRevoke(u, r, scoped) => {
                grants.set(u, ROOMS[r], false);
                let control = Control::Revoke {
                    user: format!("u{u}"),
                    project: scoped.then(|| ROOMS[r].to_owned()),
                    at_ms: None,
                };
                revoke::apply(&io, &gw, control).await;
                for (s, &owner) in SOCKET_USER.iter().enumerate() {
                    if owner != u {
                        continue;
                    }
                    for (i, room) in ROOMS.iter().enumerate() {
                        let lost = if scoped {
                            i == r
                        } else {
                            !grants.has(&format!("u{u}"), room)
                        };
                        if lost && member[s][i] {
                            member[s][i] = false;
                            let (name, args) = next_event(&mut socks[s].1)
                                .await
                                .ok_or_else(|| TestCaseError::fail("no revocation notice"))?;
                            prop_assert_eq!(name, "exception");
                            prop_assert_eq!(&args[0]["message"], "Access revoked");
                        }
                    }
                }
            }
            Op::Publish(r) => {
                let b = Broadcast {
                    event: "chat".into(),
                    args: Args(vec![wsgate::backplane::wire::from_json(&json!(ROOMS[r]))]),
                    rooms: vec![ROOMS[r].to_owned()],
                    except: vec![],
                    volatile: false,
                    sent_at: None,
                    position: None,
                };
                deliver_broadcast(&io, b).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                for (s, (_, rx)) in socks.iter_mut().enumerate() {
                    let got = drain(rx);
                    let chats = got.iter().filter(|(n, _)| n == "chat").count();
                    prop_assert_eq!(
                        chats,
                        usize::from(member[s][r]),
                        "socket {} room {} got {:?}",
                        s,
                        ROOMS[r],
                        got
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_message_reaches_a_socket_after_its_user_lost_the_room(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
