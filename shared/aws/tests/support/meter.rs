//! What the calls of a test would cost on AWS, worked out from the requests and answers
//! themselves: an SDK interceptor on the test's DynamoDB and SQS clients sees every attempt's
//! request and response bodies and bills them by AWS's published rules.
//!
//! The emulators' own `ConsumedCapacity` cannot serve: moto reports 1 unit for any PutItem and
//! 1 unit for a whole BatchWriteItem, whatever the items' sizes, and nothing for the indexes.
//!
//! DynamoDB (on-demand; "Item sizes", "Read and write capacity units" and "Global secondary
//! indexes: provisioned throughput considerations" in the developer guide):
//! - an item's size is the sum of its attribute names and values (strings and binaries by
//!   their bytes, numbers 1 byte per two significant digits plus 1, a list or map 3 bytes plus
//!   1 a member, booleans and nulls 1);
//! - a write (PutItem, DeleteItem, UpdateItem, each BatchWriteItem entry) costs 1 unit per KB,
//!   rounded up, of the larger of the item before and after; a write refused by its condition
//!   costs the same;
//! - each index an item is in, or comes into or leaves, costs its own write: a put when the
//!   item comes in, a delete when it leaves, both when its index key changes, one update when
//!   only projected attributes change; an index entry is its table keys, its index keys and
//!   projected attributes, plus 100 bytes;
//! - a strongly consistent read costs 1 unit per 4 KB (GetItem and BatchGetItem per item, a
//!   Query page on the sum of its items), an eventually consistent one half that, and a read
//!   that finds nothing the minimum.
//!
//! To know the item before a write, the meter keeps the items it has seen written or read.
//! UpdateItem's new item is not in its request: it is billed on the item before, and an
//! index it names a key of in its update expression as moved (a delete and a put).
//!
//! SQS: one request per call (a batch is one request), a receive that found nothing not
//! counted (a real event source long-polls: a cost per queue, not per step).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde::Serialize;
use serde_json::{Map, Value};

/// An index of the table: its key attributes and what it projects (`None`: everything).
#[derive(Debug, Clone)]
pub(crate) struct IndexSpec {
    pub(crate) keys: Vec<String>,
    pub(crate) projected: Option<Vec<String>>,
}

/// What the metered calls cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Bill {
    /// DynamoDB write request units, the indexes' included.
    pub(crate) write_units: f64,
    /// Of which the indexes'.
    pub(crate) index_write_units: f64,
    pub(crate) read_units: f64,
    pub(crate) dynamo_calls: u64,
    /// SQS requests (sends, non-empty receives, deletes, anything else).
    pub(crate) sqs_requests: u64,
}

impl Bill {
    /// What was spent between `earlier` and this bill.
    pub(crate) fn since(&self, earlier: &Bill) -> Bill {
        Bill {
            write_units: self.write_units - earlier.write_units,
            index_write_units: self.index_write_units - earlier.index_write_units,
            read_units: self.read_units - earlier.read_units,
            dynamo_calls: self.dynamo_calls - earlier.dynamo_calls,
            sqs_requests: self.sqs_requests - earlier.sqs_requests,
        }
    }
}

type ItemKey = (String, String);

#[derive(Debug, Default)]
struct State {
    bill: Bill,
    /// Write units by kind of item ([`kind_of`]), the indexes' included.
    writes_by_kind: BTreeMap<String, f64>,
    /// Read units by kind of item read (a query by its index, or the kind of its first item).
    reads_by_kind: BTreeMap<String, f64>,
    /// The items last seen, by table and key (`pk`, `sk`).
    items: HashMap<String, HashMap<ItemKey, Map<String, Value>>>,
}

/// The interceptor; clone it onto every client of a test.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meter {
    indexes: Arc<Vec<IndexSpec>>,
    state: Arc<Mutex<State>>,
}

/// The request of the attempt in flight, kept for its response.
#[derive(Debug, Clone)]
struct Sent {
    target: String,
    body: Value,
}

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

const KB: f64 = 1024.0;

fn units(bytes: usize, unit: f64) -> f64 {
    (bytes as f64 / unit).ceil().max(1.0)
}

/// The size of an attribute value in DynamoDB JSON.
fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(s)) => number_size(s),
        ("B", Value::String(b64)) => b64.len() * 3 / 4 - b64.matches('=').count(),
        ("BOOL" | "NULL", _) => 1,
        ("SS", Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::len).sum(),
        ("NS", Value::Array(a)) => a.iter().filter_map(Value::as_str).map(number_size).sum(),
        ("L", Value::Array(a)) => 3 + a.iter().map(|m| 1 + value_size(m)).sum::<usize>(),
        ("M", Value::Object(m)) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

fn number_size(n: &str) -> usize {
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) + 1
}

fn item_size(item: &Map<String, Value>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// The kind of an item: its sort key up to the first `#` (`CP`, `H`, `TASK`, ...), for a
/// record its collection (`REC#<collection>`), for a metric aggregate `METRICS`.
fn kind_of(item: &Map<String, Value>) -> String {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v["S"].as_str())
            .unwrap_or_default()
    };
    let (pk, sk) = (text("pk"), text("sk"));
    if pk.contains("#METRICS#") {
        return "METRICS".to_owned();
    }
    match pk.split_once("#REC#") {
        Some((_, collection)) => format!("REC#{collection}"),
        None => sk.split('#').next().unwrap_or_default().to_owned(),
    }
}

fn key_of(item: &Map<String, Value>) -> ItemKey {
    let text = |name: &str| item.get(name).map(Value::to_string).unwrap_or_default();
    (text("pk"), text("sk"))
}

impl Meter {
    /// A meter for a table with these indexes.
    pub(crate) fn new(indexes: Vec<IndexSpec>) -> Self {
        Meter {
            indexes: Arc::new(indexes),
            state: Arc::default(),
        }
    }

    pub(crate) fn bill(&self) -> Bill {
        self.state.lock().expect("meter").bill
    }

    /// Write units so far by kind of item (`CP`, `H`, `R`, ...).
    pub(crate) fn writes_by_kind(&self) -> BTreeMap<String, f64> {
        self.state.lock().expect("meter").writes_by_kind.clone()
    }

    /// Read units so far by kind of item read.
    pub(crate) fn reads_by_kind(&self) -> BTreeMap<String, f64> {
        self.state.lock().expect("meter").reads_by_kind.clone()
    }

    /// The index entry of `item` in `index`, when the item is in it.
    fn entry(&self, index: &IndexSpec, item: &Map<String, Value>) -> Option<Map<String, Value>> {
        if !index.keys.iter().all(|k| item.contains_key(k)) {
            return None;
        }
        Some(match &index.projected {
            None => item.clone(),
            Some(names) => item
                .iter()
                .filter(|(k, _)| {
                    *k == "pk" || *k == "sk" || index.keys.contains(k) || names.contains(k)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// The index writes of an item going from `old` to `new`.
    fn index_units(
        &self,
        old: Option<&Map<String, Value>>,
        new: Option<&Map<String, Value>>,
    ) -> f64 {
        let size = |e: &Map<String, Value>| units(item_size(e) + 100, KB);
        self.indexes
            .iter()
            .map(|index| {
                let before = old.and_then(|o| self.entry(index, o));
                let after = new.and_then(|n| self.entry(index, n));
                match (before, after) {
                    (None, None) => 0.0,
                    (Some(b), None) => size(&b),
                    (None, Some(a)) => size(&a),
                    (Some(b), Some(a)) => {
                        let moved = index.keys.iter().any(|k| b.get(k) != a.get(k));
                        if moved {
                            size(&b) + size(&a)
                        } else if b != a {
                            size(&b).max(size(&a))
                        } else {
                            0.0
                        }
                    }
                }
            })
            .sum()
    }

    /// Bills one DynamoDB attempt.
    fn dynamo(&self, op: &str, request: &Value, status: u16, response: &Value) {
        let ok = status == 200;
        let refused = response["__type"]
            .as_str()
            .is_some_and(|t| t.ends_with("ConditionalCheckFailedException"));
        let table = request["TableName"].as_str().unwrap_or_default().to_owned();
        let mut state = self.state.lock().expect("meter");
        state.bill.dynamo_calls += 1;
        let consistent = request["ConsistentRead"].as_bool() == Some(true);
        let read_factor = if consistent { 1.0 } else { 0.5 };
        let (mut write, mut index) = (0.0, 0.0);
        let mut read = 0.0;
        match op {
            "PutItem" if ok || refused => {
                let item = request["Item"].as_object().cloned().unwrap_or_default();
                let (w, i) = self.write(&mut state, &table, &item, Some(item.clone()), ok);
                (write, index) = (w, i);
            }
            "DeleteItem" if ok || refused => {
                let key = request["Key"].as_object().cloned().unwrap_or_default();
                let (w, i) = self.write(&mut state, &table, &key, None, ok);
                (write, index) = (w, i);
            }
            "UpdateItem" if ok || refused => {
                let key = request["Key"].as_object().cloned().unwrap_or_default();
                let old = state
                    .items
                    .get(&table)
                    .and_then(|t| t.get(&key_of(&key)))
                    .cloned();
                write = units(old.as_ref().map_or(0, item_size), KB);
                *state.writes_by_kind.entry(kind_of(&key)).or_default() += write;
                if ok && let Some(old) = &old {
                    let expression = request["UpdateExpression"].as_str().unwrap_or_default();
                    index = self
                        .indexes
                        .iter()
                        .filter(|ix| ix.keys.iter().any(|k| expression.contains(k.as_str())))
                        .filter_map(|ix| self.entry(ix, old))
                        .map(|e| 2.0 * units(item_size(&e) + 100, KB))
                        .sum();
                }
            }
            "BatchWriteItem" if ok => {
                let unprocessed = &response["UnprocessedItems"];
                for (table, requests) in request["RequestItems"].as_object().into_iter().flatten() {
                    let left = unprocessed[table].as_array().cloned().unwrap_or_default();
                    for r in requests.as_array().into_iter().flatten() {
                        if left.contains(r) {
                            continue;
                        }
                        let (w, i) = if let Some(item) = r["PutRequest"]["Item"].as_object() {
                            self.write(&mut state, table, item, Some(item.clone()), true)
                        } else {
                            let key = r["DeleteRequest"]["Key"].as_object().cloned();
                            self.write(&mut state, table, &key.unwrap_or_default(), None, true)
                        };
                        write += w;
                        index += i;
                    }
                }
            }
            "GetItem" if ok => {
                let item = response["Item"].as_object();
                read = read_factor * units(item.map_or(0, item_size), 4.0 * KB);
                let key = request["Key"].as_object().cloned().unwrap_or_default();
                *state.reads_by_kind.entry(kind_of(&key)).or_default() += read;
                if let Some(item) = item {
                    self.seen(&mut state, &table, item);
                }
            }
            "Query" | "Scan" if ok => {
                let items: Vec<Map<String, Value>> = response["Items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.as_object().cloned())
                    .collect();
                let bytes: usize = items.iter().map(item_size).sum();
                read = read_factor * units(bytes, 4.0 * KB);
                let kind = match (request["IndexName"].as_str(), items.first()) {
                    (Some(index), _) => format!("index {index}"),
                    (None, Some(item)) => kind_of(item),
                    (None, None) => "nothing found".to_owned(),
                };
                *state.reads_by_kind.entry(kind).or_default() += read;
                if request["IndexName"].is_null() {
                    for item in &items {
                        self.seen(&mut state, &table, item);
                    }
                }
            }
            "BatchGetItem" if ok => {
                for (table, items) in response["Responses"].as_object().into_iter().flatten() {
                    let factor = if request["RequestItems"][table]["ConsistentRead"].as_bool()
                        == Some(true)
                    {
                        1.0
                    } else {
                        0.5
                    };
                    for item in items.as_array().into_iter().flatten() {
                        if let Some(item) = item.as_object() {
                            let units = factor * units(item_size(item), 4.0 * KB);
                            read += units;
                            *state.reads_by_kind.entry(kind_of(item)).or_default() += units;
                            self.seen(&mut state, table, item);
                        }
                    }
                }
            }
            _ => {}
        }
        state.bill.write_units += write + index;
        state.bill.index_write_units += index;
        state.bill.read_units += read;
    }

    fn seen(&self, state: &mut State, table: &str, item: &Map<String, Value>) {
        state
            .items
            .entry(table.to_owned())
            .or_default()
            .insert(key_of(item), item.clone());
    }

    /// A write of the item with the keys of `keys`: a put of `new`, or a delete (`None`). Its
    /// units and its indexes' (`done`: it went through; a refused one changes nothing).
    fn write(
        &self,
        state: &mut State,
        table: &str,
        keys: &Map<String, Value>,
        new: Option<Map<String, Value>>,
        done: bool,
    ) -> (f64, f64) {
        let key = key_of(keys);
        let old = state.items.get(table).and_then(|items| items.get(&key));
        let size = new
            .as_ref()
            .map_or(0, item_size)
            .max(old.map_or(0, item_size));
        let write = units(size, KB);
        let index = if done {
            self.index_units(old, new.as_ref())
        } else {
            0.0
        };
        *state.writes_by_kind.entry(kind_of(keys)).or_default() += write + index;
        if done {
            let items = state.items.entry(table.to_owned()).or_default();
            match new {
                Some(item) => items.insert(key, item),
                None => items.remove(&key),
            };
        }
        (write, index)
    }

    fn sqs(&self, op: &str, status: u16, response: &Value) {
        let empty_receive = op == "ReceiveMessage"
            && status == 200
            && response["Messages"].as_array().is_none_or(Vec::is_empty);
        if !empty_receive {
            self.state.lock().expect("meter").bill.sqs_requests += 1;
        }
    }
}

fn json(bytes: Option<&[u8]>) -> Value {
    bytes
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null)
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "Meter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .to_owned();
        let body = json(request.body().bytes());
        cfg.interceptor_state().store_put(Sent { target, body });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (Some(sent), Some(response)) = (cfg.load::<Sent>(), context.response()) else {
            return Ok(());
        };
        let status = response.status().as_u16();
        let body = json(response.body().bytes());
        match sent.target.split_once('.') {
            Some(("DynamoDB_20120810", op)) => self.dynamo(op, &sent.body, status, &body),
            Some(("AmazonSQS", op)) => self.sqs(op, status, &body),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn sizes_follow_the_published_rules() {
        // "pk" (2) + "ab" (2) + "n" (1) + 12345 (3 significant pairs + 1) + "m" (1) + map (3 + 1 + "x" + "y")
        let i =
            item(json!({"pk": {"S": "ab"}, "n": {"N": "12345"}, "m": {"M": {"x": {"S": "y"}}}}));
        assert_eq!(item_size(&i), 2 + 2 + 1 + 4 + 1 + (3 + 1 + 1 + 1));
        assert_eq!(units(1024, KB), 1.0);
        assert_eq!(units(1025, KB), 2.0);
        assert_eq!(units(0, KB), 1.0);
    }

    #[test]
    fn an_index_costs_a_write_when_its_projection_or_key_changes() {
        let meter = Meter::new(vec![IndexSpec {
            keys: vec!["rk".into()],
            projected: Some(vec!["status".into()]),
        }]);
        let a = item(
            json!({"pk": {"S": "p"}, "sk": {"S": "s"}, "rk": {"S": "1"}, "status": {"S": "running"}, "body": {"S": "x"}}),
        );
        let mut b = a.clone();
        b.insert("body".into(), json!({"S": "yy"}));
        let mut c = b.clone();
        c.insert("status".into(), json!({"S": "done"}));
        let mut d = c.clone();
        d.insert("rk".into(), json!({"S": "2"}));
        assert_eq!(meter.index_units(None, Some(&a)), 1.0, "comes in");
        assert_eq!(
            meter.index_units(Some(&a), Some(&b)),
            0.0,
            "unprojected change"
        );
        assert_eq!(
            meter.index_units(Some(&b), Some(&c)),
            1.0,
            "projected change"
        );
        assert_eq!(meter.index_units(Some(&c), Some(&d)), 2.0, "key moved");
        assert_eq!(meter.index_units(Some(&d), None), 1.0, "leaves");
    }
}
