//! Properties of the whole protocol, both halves: under random traffic, dropped and half-open
//! links, delayed frames and hub restarts (state kept), every at-least-once message the sender
//! saw acked reaches every other project member exactly once, in the order it was sent; and with
//! several hub nodes on one broker, across node deaths and switches, each member's delivered
//! sequence per project is the published one.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use sockline_core::hub::HubSettings;
use sockline_core::testing::{ClientId, LinkFaults, Network};
use sockline_core::{Config, Delivery, Event, SendRequest, State};

const CLIENTS: usize = 3;
const PROJECT: u64 = 1;

/// Every client subscribes to notes, joins the project and connects.
fn connect_members(net: &mut Network, ids: &[ClientId]) {
    for &id in ids {
        net.with(id, |s, now| {
            s.subscribe(now, "note", None).unwrap();
            s.join_project(now, PROJECT).unwrap();
            s.connect(now).unwrap();
        });
    }
}

/// Client `i` sends its note number `n` to the project, at least once.
fn send_note(
    net: &mut Network,
    id: ClientId,
    i: usize,
    n: u64,
) -> Result<String, sockline_core::SessionError> {
    net.with(id, |s, now| {
        s.send(
            now,
            SendRequest::new("note", json!({"from": i, "n": n}))
                .project(PROJECT)
                .delivery(Delivery::AtLeastOnce),
        )
    })
}

#[derive(Clone, Debug)]
enum Op {
    Send(usize),
    Drop(usize),
    Stall(usize),
    Advance(u64),
    Faults(u8, u64),
    RestartHub(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..CLIENTS).prop_map(Op::Send),
        1 => (0..CLIENTS).prop_map(Op::Drop),
        1 => (0..CLIENTS).prop_map(Op::Stall),
        4 => (1u64..3_000).prop_map(Op::Advance),
        1 => (0u8..10, 0u64..200).prop_map(|(d, ms)| Op::Faults(d, ms)),
        1 => (0u64..2_000).prop_map(Op::RestartHub),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn acked_messages_reach_every_other_member_once_in_order(
        ops in prop::collection::vec(op(), 1..60),
        seed in any::<u64>(),
    ) {
        let mut net = Network::new(HubSettings::default(), seed);
        let ids: Vec<ClientId> = (0..CLIENTS)
            .map(|i| {
                let mut c = Config::new("ws://hub.test/ws");
                c.user_id = Some(format!("u{i}"));
                // Never give up: the property is about what arrives once everyone is back.
                c.reconnect.max_attempts = None;
                net.add_client(c).unwrap()
            })
            .collect();
        connect_members(&mut net, &ids);
        // Everyone is a member at the hub before traffic starts (a first join starts at the
        // log's top: a message logged while a join is still in flight is history to it).
        net.until(1_000, |n| ids.iter().all(|&id| n.session(id).presence(PROJECT).len() == CLIENTS))
            .unwrap();
        // Per sender, the ids it sent, in order.
        let mut sent: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut counter = 0u64;
        for op in ops {
            match op {
                Op::Send(i) => {
                    counter += 1;
                    if let Ok(id) = send_note(&mut net, ids[i], i, counter) {
                        sent.entry(i).or_default().push(id);
                    }
                }
                Op::Drop(i) => net.drop_link(ids[i]),
                Op::Stall(i) => net.stall_link(ids[i]),
                Op::Advance(ms) => net.advance(ms).unwrap(),
                Op::Faults(d, delay_ms) => net.set_faults(LinkFaults {
                    drop: f64::from(d) / 100.0,
                    delay_ms,
                    corrupt: 0.0,
                }),
                Op::RestartHub(down_ms) => net.restart_hub(true, down_ms),
            }
        }
        net.set_faults(LinkFaults::default());
        // Long enough for the heartbeat to find every half-open link and everyone to resume.
        net.advance(180_000).unwrap();
        for &id in &ids {
            prop_assert_eq!(net.state(id), State::Open);
            let resumed: Vec<bool> = net.events(id).into_iter().filter_map(|e| match e {
                Event::Ready { resumed, .. } => Some(*resumed),
                _ => None,
            }).collect();
            prop_assert!(resumed[1..].iter().all(|r| *r), "a session was lost: {:?}", resumed);
        }
        for (sender, ids_sent) in &sent {
            let acked: Vec<&String> = {
                let events = net.events(ids[*sender]);
                let acked: std::collections::BTreeSet<&String> = events.iter().filter_map(|e| match e {
                    Event::Acked { id } => Some(id),
                    _ => None,
                }).collect();
                ids_sent.iter().filter(|id| acked.contains(id)).collect()
            };
            for (j, &member) in ids.iter().enumerate() {
                if j == *sender {
                    continue;
                }
                let got: Vec<String> = net
                    .messages(member)
                    .into_iter()
                    .filter(|m| m.data_value()["from"] == json!(sender))
                    .filter_map(|m| m.id.clone())
                    .collect();
                let got_acked: Vec<&String> = got.iter().filter(|id| acked.contains(id)).collect();
                prop_assert_eq!(&got_acked, &acked, "member {} from sender {}", j, sender);
                let mut unique = got.clone();
                unique.sort();
                unique.dedup();
                prop_assert_eq!(unique.len(), got.len(), "a duplicate reached member {}", j);
            }
        }
    }
}

const NODES: [&str; 3] = ["ws://n0.test/ws", "ws://n1.test/ws", "ws://n2.test/ws"];

#[derive(Clone, Debug)]
enum ClusterOp {
    Send(usize),
    Drop(usize),
    Advance(u64),
    Kill(usize),
    Revive(usize),
}

fn cluster_op() -> impl Strategy<Value = ClusterOp> {
    prop_oneof![
        8 => (0..CLIENTS).prop_map(ClusterOp::Send),
        1 => (0..CLIENTS).prop_map(ClusterOp::Drop),
        4 => (1u64..3_000).prop_map(ClusterOp::Advance),
        1 => (0..NODES.len()).prop_map(ClusterOp::Kill),
        1 => (0..NODES.len()).prop_map(ClusterOp::Revive),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn across_node_deaths_and_switches_each_member_gets_the_published_sequence(
        ops in prop::collection::vec(cluster_op(), 1..50),
        seed in any::<u64>(),
    ) {
        let mut net = Network::with_nodes(HubSettings::default(), seed, &NODES);
        let ids: Vec<ClientId> = (0..CLIENTS)
            .map(|i| {
                // Client i starts on node i and fails over to the next ones in turn.
                let mut c = Config {
                    urls: (0..NODES.len()).map(|k| NODES[(i + k) % NODES.len()].to_string()).collect(),
                    user_id: Some(format!("u{i}")),
                    ..Config::default()
                };
                c.reconnect.max_attempts = None;
                net.add_client(c).unwrap()
            })
            .collect();
        connect_members(&mut net, &ids);
        // Every join answered (a position to recover from) before traffic starts: a first join
        // starts at the log's top, so what came before it is history, not a loss.
        net.until(1_000, |n| ids.iter().all(|&id| n.session(id).project_version(PROJECT).is_some()))
            .unwrap();
        let mut counter = 0u64;
        for op in ops {
            match op {
                ClusterOp::Send(i) => {
                    counter += 1;
                    let _ = send_note(&mut net, ids[i], i, counter);
                }
                ClusterOp::Drop(i) => net.drop_link(ids[i]),
                ClusterOp::Advance(ms) => net.advance(ms).unwrap(),
                ClusterOp::Kill(k) => net.kill_node(k),
                ClusterOp::Revive(k) => net.revive_node(k),
            }
        }
        for k in 0..NODES.len() {
            net.revive_node(k);
        }
        net.advance(120_000).unwrap();
        // What the broker logged, in order: (offset, sender).
        let published: Vec<(u64, u64)> = net
            .broker()
            .log(PROJECT)
            .iter()
            .map(|f| serde_json::from_str::<serde_json::Value>(f).unwrap())
            .filter(|v| v["type"] == "note")
            .map(|v| (v["offset"].as_u64().unwrap(), v["data"]["from"].as_u64().unwrap()))
            .collect();
        // Logged once each across node deaths (a resend through another node after its ack
        // died with the first is answered with its first place, never logged again), and every
        // message its sender saw acked is in the log.
        let frames: Vec<serde_json::Value> = net
            .broker()
            .log(PROJECT)
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        let mut keys: Vec<(u64, u64)> = frames
            .iter()
            .filter(|v| v["type"] == "note")
            .map(|v| (v["data"]["from"].as_u64().unwrap(), v["data"]["n"].as_u64().unwrap()))
            .collect();
        let logged_ids: std::collections::BTreeSet<&str> =
            frames.iter().filter_map(|v| v["id"].as_str()).collect();
        let all = keys.len();
        keys.sort_unstable();
        keys.dedup();
        prop_assert_eq!(keys.len(), all, "a message was logged twice");
        for &member in &ids {
            for e in net.events(member) {
                if let sockline_core::Event::Acked { id } = e {
                    prop_assert!(logged_ids.contains(id.as_str()), "acked {} never logged", id);
                }
            }
        }
        for (j, &member) in ids.iter().enumerate() {
            prop_assert_eq!(net.state(member), State::Open);
            let got: Vec<u64> = net
                .messages(member)
                .into_iter()
                .filter(|m| m.msg_type == "note")
                .filter_map(|m| m.offset)
                .collect();
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "member {} out of order or twice: {:?}", j, got);
            // Every message of the others, in log order, once, and none of its own (one back in a
            // replay, after the ack that carried its place was lost with a node, is that ack).
            let others: Vec<u64> = published.iter().filter(|(_, from)| *from != j as u64).map(|(o, _)| *o).collect();
            prop_assert_eq!(got, others, "member {}", j);
        }
    }
}
