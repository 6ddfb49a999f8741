//! A property of the whole protocol, both halves: under random traffic, dropped and half-open
//! links, delayed frames and hub restarts (state kept), every at-least-once message the sender
//! saw acked reaches every other project member exactly once, in the order it was sent.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use sockline_core::hub::HubSettings;
use sockline_core::testing::{ClientId, LinkFaults, Network};
use sockline_core::{Config, Delivery, Event, SendRequest, State};

const CLIENTS: usize = 3;
const PROJECT: u64 = 1;

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
        for &id in &ids {
            net.with(id, |s, now| {
                s.subscribe(now, "note", None).unwrap();
                s.join_project(now, PROJECT).unwrap();
                s.connect(now).unwrap();
            });
        }
        // Everyone is a member at the hub before traffic starts (v1 relays to the members of
        // the moment: a join still in flight when a message is relayed misses it).
        net.until(1_000, |n| ids.iter().all(|&id| n.session(id).presence(PROJECT).len() == CLIENTS))
            .unwrap();
        // Per sender, the ids it sent, in order.
        let mut sent: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut counter = 0u64;
        for op in ops {
            match op {
                Op::Send(i) => {
                    counter += 1;
                    let id = net.with(ids[i], |s, now| {
                        s.send(
                            now,
                            SendRequest::new("note", json!({"from": i, "n": counter}))
                                .project(PROJECT)
                                .delivery(Delivery::AtLeastOnce),
                        )
                    });
                    if let Ok(id) = id {
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
