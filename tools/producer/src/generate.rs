//! A realistic mix of order events, as the chaos replay and `producer generate` make them:
//! placements and creations, cancellations and payments (captured or failed) of open orders
//! (same key, later in the stream), a share of duplicates (a record sent again, as a producer's
//! retry would) and a share of poison (data that is not an event).

use orders::{ORDER_CANCELLED, ORDER_CREATED, ORDER_PLACED, PAYMENT_CAPTURED, PAYMENT_FAILED};
use serde_json::{json, Value};

use crate::envelope::OrderEvent;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Mix {
    /// How many records.
    pub records: usize,
    /// How many customers (`user-0000` ...): each one's events share a partition key.
    pub keys: usize,
    /// The products ordered.
    pub skus: Vec<String>,
    /// The share of poison records (0-1).
    pub poison: f64,
    /// The share of duplicates (0-1).
    pub duplicates: f64,
    /// The share of order lines naming a product that does not exist (0-1).
    pub unknown_products: f64,
    /// The seed: the same seed makes the same mix.
    pub seed: u64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            records: 1000,
            keys: 100,
            skus: (0..20).map(|s| format!("sku-{s:02}")).collect(),
            poison: 0.03,
            duplicates: 0.01,
            unknown_products: 0.02,
            seed: 42,
        }
    }
}

/// One generated record.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Its partition key: the customer.
    pub partition_key: String,
    /// Its data.
    pub data: Vec<u8>,
    /// The event it carries (`None`: poison).
    pub event: Option<Sent>,
}

/// What a generated event is, for checking the effects later.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its id.
    pub event_id: String,
    /// Its type.
    pub event_type: &'static str,
    /// The order it is about.
    pub order_id: String,
    /// The order's lines: product and quantity.
    pub lines: Vec<(String, i64)>,
    /// A second copy of an earlier record.
    pub duplicate: bool,
}

impl Mix {
    /// The records, in the order to write them.
    pub fn generate(&self) -> Vec<Generated> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        // Each event happens a millisecond after the one before it: their timestamps order them.
        let start_ms = shared::time::now_ms();
        let run = rng.u32(..);
        let keys = self.keys.max(1) as u64;
        let mut out: Vec<Generated> = Vec::with_capacity(self.records);
        // Per customer, the indexes of its orders still open (placed or created, not cancelled).
        let mut open: Vec<Vec<usize>> = vec![Vec::new(); keys as usize];
        // Per customer, the indexes of its events so far (what a duplicate repeats).
        let mut events_of: Vec<Vec<usize>> = vec![Vec::new(); keys as usize];
        for i in 0..self.records {
            let user = rng.u64(..keys) as usize;
            let key = format!("user-{user:04}");
            if rng.f64() < self.poison {
                out.push(Generated {
                    partition_key: key,
                    data: format!("{{\"eventId\":\"evt-{run:08x}-{i}\",\"truncated").into_bytes(),
                    event: None,
                });
                continue;
            }
            let earlier = &events_of[user];
            if rng.f64() < self.duplicates && !earlier.is_empty() {
                let copy = out[earlier[rng.usize(..earlier.len())]].clone();
                let event = copy.event.map(|e| Sent {
                    duplicate: true,
                    ..e
                });
                out.push(Generated { event, ..copy });
                continue;
            }
            let roll = rng.u32(..100);
            // A payment or a cancellation is of one of the customer's open orders (a payment
            // captured keeps it open, so it may still be cancelled).
            let (event_type, cancel) = match roll {
                0..=7 if !open[user].is_empty() => {
                    let pick = rng.usize(..open[user].len());
                    (PAYMENT_CAPTURED, Some(open[user][pick]))
                }
                8..=11 if !open[user].is_empty() => {
                    let pick = rng.usize(..open[user].len());
                    (PAYMENT_FAILED, Some(open[user].remove(pick)))
                }
                0..=11 => (PAYMENT_CAPTURED, None),
                12..=26 if !open[user].is_empty() => {
                    let pick = rng.usize(..open[user].len());
                    let o = open[user].remove(pick);
                    (ORDER_CANCELLED, Some(o))
                }
                27..=36 => (ORDER_CREATED, None),
                _ => (ORDER_PLACED, None),
            };
            let (order_id, lines) = match cancel.and_then(|o| out[o].event.as_ref()) {
                Some(e) => (e.order_id.clone(), e.lines.clone()),
                None => {
                    let unknown = rng.f64() < self.unknown_products;
                    let lines = (0..1 + rng.u64(..3))
                        .map(|_| {
                            let sku = if unknown || self.skus.is_empty() {
                                "sku-unknown".to_owned()
                            } else {
                                self.skus[rng.usize(..self.skus.len())].clone()
                            };
                            (sku, rng.i64(1..=3))
                        })
                        .collect();
                    (format!("ord-{run:08x}-{i:06}"), lines)
                }
            };
            let items: Vec<Value> = lines
                .iter()
                .map(|(s, q)| json!({"productId": s, "quantity": q}))
                .collect();
            let event_id = format!("evt-{run:08x}-{i}");
            let total = format!("{}.99", 5 + rng.u32(..95));
            let payload = match event_type {
                PAYMENT_CAPTURED => json!({"orderId": order_id, "userId": key, "amount": total}),
                PAYMENT_FAILED => json!({
                    "orderId": order_id, "userId": key, "amount": total,
                    "reason": "card declined",
                }),
                _ => json!({
                    "orderId": order_id,
                    "userId": key,
                    "email": format!("{key}@example.com"),
                    "items": items,
                    "total": total,
                }),
            };
            let event = OrderEvent {
                event_id: event_id.clone(),
                event_type: event_type.to_owned(),
                timestamp: shared::time::iso_millis(start_ms + i as i64),
                payload,
            };
            if matches!(event_type, ORDER_PLACED | ORDER_CREATED)
                && !lines.iter().any(|(s, _)| s == "sku-unknown")
            {
                open[user].push(out.len());
            }
            events_of[user].push(out.len());
            out.push(Generated {
                partition_key: key,
                data: event.to_bytes(),
                event: Some(Sent {
                    event_id,
                    event_type,
                    order_id,
                    lines,
                    duplicate: false,
                }),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realistic_mix() {
        let records = Mix {
            records: 5000,
            ..Mix::default()
        }
        .generate();
        let count = |f: &dyn Fn(&Generated) -> bool| records.iter().filter(|r| f(r)).count();
        assert_eq!(records.len(), 5000);
        let poison = count(&|r| r.event.is_none());
        let dups = count(&|r| r.event.as_ref().is_some_and(|e| e.duplicate));
        let cancels = count(&|r| {
            r.event
                .as_ref()
                .is_some_and(|e| e.event_type == ORDER_CANCELLED)
        });
        assert!((100..250).contains(&poison), "{poison}");
        assert!((20..100).contains(&dups), "{dups}");
        assert!(cancels > 300, "{cancels}");
        let failed = count(&|r| {
            r.event
                .as_ref()
                .is_some_and(|e| e.event_type == PAYMENT_FAILED)
        });
        assert!(failed > 50, "{failed}");
        // Each cancellation and failed payment follows a placement or creation of its order, under
        // the same key.
        for (i, r) in records.iter().enumerate() {
            let Some(e) = r
                .event
                .as_ref()
                .filter(|e| e.event_type == ORDER_CANCELLED || e.event_type == PAYMENT_FAILED)
            else {
                continue;
            };
            assert!(records[..i]
                .iter()
                .any(|p| p.partition_key == r.partition_key
                    && p.event.as_ref().is_some_and(|pe| pe.order_id == e.order_id
                        && (pe.event_type == ORDER_PLACED || pe.event_type == ORDER_CREATED))));
        }
        // Quantities from 1 to 3, on 1 to 3 lines.
        for e in records.iter().filter_map(|r| r.event.as_ref()) {
            assert!((1..=3).contains(&e.lines.len()));
            assert!(
                e.lines.iter().all(|(_, q)| (1..=3).contains(q)),
                "{:?}",
                e.lines
            );
        }
        // The same seed, the same mix.
        let again = Mix {
            records: 5000,
            ..Mix::default()
        }
        .generate();
        assert_eq!(again[4999].partition_key, records[4999].partition_key);
    }
}
