//! The connector against its simulator over real HTTP on loopback.
// Tests: a panic here is a failed test, not a crashed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use revsync_salesforce::client::HttpSettings;
use revsync_salesforce::config::SalesforceParams;
use revsync_salesforce::sim::{sample_fields, Sim, EXTERNAL_ID_FIELD};
use revsync_salesforce::SalesforceConnector;
use revsync_sdk::http::{Limits, RetryPolicy};
use revsync_sdk::simfault::FaultPlan;
use revsync_sdk::{Connector, ConnectorError, LimitScope, PushItem, PushOp};
use serde_json::{json, Value};
use uuid::Uuid;

fn connector(sim: &Sim, extra: Value) -> SalesforceConnector {
    let mut params = sim.params();
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        params[k] = v;
    }
    let params = SalesforceParams::from_value(&params).expect("valid params");
    let http = HttpSettings {
        limits: Limits::new(10_000, Duration::from_secs(1)),
        retry: RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(5),
        },
        timeout: Duration::from_secs(5),
        max_response_bytes: 64 << 20,
        shutdown: revsync_sdk::Shutdown::default(),
    };
    SalesforceConnector::new(params, http).expect("connector builds")
}

/// Every change of `object` from `cursor` to the end, and the last cursor.
async fn read_all(
    c: &SalesforceConnector,
    object: &str,
    cursor: Option<String>,
) -> (Vec<String>, Option<String>) {
    let mut cursor = cursor;
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let f = c.fetch(object, cursor.as_deref()).await.expect("fetch");
        seen.extend(f.changes.iter().map(|ch| ch.external_id.clone()));
        cursor = f.cursor.or(cursor);
        if !f.more {
            return (seen, cursor);
        }
    }
    panic!("never reached the end");
}

fn create(fields: serde_json::Map<String, Value>) -> PushItem {
    PushItem {
        op: PushOp::Create {
            canonical_id: Uuid::now_v7(),
        },
        fields: fields.into_iter().collect(),
        version: 1,
    }
}

#[tokio::test]
async fn conformance_suite_passes_for_every_object() {
    let sim = Sim::start().await.unwrap();
    // Small batches so backfills cross pages and `nextRecordsUrl` is followed.
    sim.with(|s| s.batch_size = 4);
    let c = connector(&sim, json!({"page_size": 10}));
    for object in ["Contact", "Account", "Lead", "Opportunity"] {
        revsync_sdk::testsuite::run(&c, &sim, object).await;
    }
}

#[tokio::test]
async fn client_credentials_flow_reads() {
    let sim = Sim::start().await.unwrap();
    sim.seed("Account", 3);
    let c = connector(
        &sim,
        json!({"auth": {"flow": "client_credentials", "token_url": sim.token_url(),
                        "client_id": "sim-client", "client_secret": "sim-secret"}}),
    );
    let (seen, _) = read_all(&c, "Account", None).await;
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn token_expiring_mid_backfill_is_refreshed_once_and_no_page_is_lost() {
    let sim = Sim::start().await.unwrap();
    let seeded: BTreeSet<String> = sim.seed("Contact", 30).into_iter().collect();
    sim.with(|s| s.batch_size = 4);
    let c = connector(&sim, json!({"page_size": 10}));
    let first = c.fetch("Contact", None).await.unwrap();
    assert_eq!(first.changes.len(), 10);
    // The token dies after the next query call: in the middle of following nextRecordsUrl.
    sim.limit_tokens(1);
    let (rest, _) = read_all(&c, "Contact", first.cursor.clone()).await;
    let mut all: Vec<String> = first
        .changes
        .iter()
        .map(|c| c.external_id.clone())
        .collect();
    all.extend(rest);
    assert_eq!(all.len(), 30, "no record read twice or lost: {all:?}");
    assert_eq!(all.iter().cloned().collect::<BTreeSet<_>>(), seeded);
    assert_eq!(sim.with(|s| s.token_requests), 2, "one login, one refresh");
}

#[tokio::test]
async fn concurrent_requests_share_a_single_refresh() {
    let sim = Sim::start().await.unwrap();
    let ids = sim.seed("Contact", 8);
    let c = Arc::new(connector(&sim, json!({})));
    c.fetch("Contact", None).await.unwrap();
    sim.expire_tokens();
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let c = c.clone();
        tasks.spawn(async move { c.fetch_by_ids("Contact", &[id]).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap().len(), 1);
    }
    assert_eq!(sim.with(|s| s.token_requests), 2, "eight 401s, one refresh");
}

#[tokio::test]
async fn the_daily_reserve_is_never_crossed_and_reads_resume_when_usage_falls() {
    let sim = Sim::start().await.unwrap();
    sim.seed("Contact", 300);
    sim.with(|s| {
        s.api_max = 100;
        s.api_used = 80;
    });
    // 10% of 100 is kept: revsync stops at 90.
    let c = connector(&sim, json!({"page_size": 5, "quota_recheck_secs": 1}));
    let mut cursor: Option<String> = None;
    let mut refused = None;
    for _ in 0..50 {
        match c.fetch("Contact", cursor.as_deref()).await {
            Ok(f) => cursor = f.cursor,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        assert!(sim.with(|s| s.api_used) <= 90, "the reserve was crossed");
    }
    assert!(matches!(
        refused,
        Some(ConnectorError::RateLimited {
            scope: LimitScope::Reserve,
            retry_after: Some(_)
        })
    ));
    assert_eq!(sim.with(|s| s.api_used), 90);
    assert!(c.quota_status().reserve_reached, "quota_reserve_reached");
    // Pushes are held back too, without a call.
    let e = c
        .push("Contact", &[create(sample_fields("Contact", "held"))])
        .await;
    assert!(matches!(
        e,
        Err(ConnectorError::RateLimited {
            scope: LimitScope::Reserve,
            ..
        })
    ));
    assert_eq!(
        sim.with(|s| s.api_used),
        90,
        "nothing was sent while paused"
    );

    // Other tools' calls age out of the rolling window; after the recheck period one
    // call learns it and reads resume.
    sim.with(|s| s.api_used = 20);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.fetch("Contact", cursor.as_deref())
        .await
        .expect("resumed");
    assert!(!c.quota_status().reserve_reached);
}

#[tokio::test]
async fn request_limit_exceeded_pauses_without_a_retry_loop() {
    let sim = Sim::start().await.unwrap();
    sim.with(|s| {
        s.api_max = 50;
        s.api_used = 50;
    });
    let c = connector(&sim, json!({}));
    let e = c.fetch("Contact", None).await.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectorError::RateLimited {
                scope: LimitScope::Daily | LimitScope::Reserve,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    let e = c.fetch("Account", None).await.unwrap_err();
    assert!(matches!(
        e,
        ConnectorError::RateLimited {
            scope: LimitScope::Daily | LimitScope::Reserve,
            ..
        }
    ));
    assert_eq!(
        sim.with(|s| s.limit_refusals),
        1,
        "refused once, never retried"
    );
}

#[tokio::test]
async fn a_collection_with_3_bad_records_of_200_fails_exactly_those_3() {
    let sim = Sim::start().await.unwrap();
    let existing = sim.seed("Contact", 1);
    let taken = sim.record(&existing[0]).unwrap().fields["Email"].clone();
    let c = connector(&sim, json!({}));
    let mut items: Vec<PushItem> = (0..200)
        .map(|i| create(sample_fields("Contact", &format!("bulk{i}"))))
        .collect();
    items[17].fields.remove("LastName");
    items[88].fields.insert("LastName".into(), json!(""));
    items[150].fields.insert("Email".into(), taken);
    let results = c
        .push("Contact", &items)
        .await
        .expect("the call itself succeeds");
    assert_eq!(results.len(), 200);
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![17, 88, 150]);
    for i in [17, 88] {
        assert!(
            matches!(&results[i], Err(ConnectorError::Permanent { detail, .. }) if detail.starts_with("REQUIRED_FIELD_MISSING")),
            "{:?}",
            results[i]
        );
    }
    assert!(
        matches!(&results[150], Err(ConnectorError::Permanent { detail, .. }) if detail.starts_with("DUPLICATES_DETECTED"))
    );
    assert_eq!(sim.ids("Contact").len(), 1 + 197);
    assert_eq!(
        sim.with(|s| s.write_calls),
        1,
        "one collection call for 200 records"
    );
}

#[tokio::test]
async fn a_create_whose_response_was_dropped_leaves_one_record() {
    let sim = Sim::start().await.unwrap();
    let c = connector(&sim, json!({}));
    let item = create(sample_fields("Contact", "lost"));
    // Lost once: the client's own retry upserts on the external id.
    sim.with(|s| s.drop_responses = 1);
    let first = c
        .push("Contact", std::slice::from_ref(&item))
        .await
        .unwrap();
    assert_eq!(sim.ids("Contact").len(), 1);
    // Lost on every attempt: the push fails; the runtime's later retry finds the record.
    sim.with(|s| s.drop_responses = 3);
    let e = c
        .push("Contact", std::slice::from_ref(&item))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let again = c
        .push("Contact", std::slice::from_ref(&item))
        .await
        .unwrap();
    assert_eq!(first[0].as_ref().unwrap(), again[0].as_ref().unwrap());
    assert_eq!(
        sim.ids("Contact").len(),
        1,
        "a retried create made a duplicate"
    );
    let rec = sim.record(first[0].as_ref().unwrap()).unwrap();
    let PushOp::Create { canonical_id } = item.op else {
        unreachable!()
    };
    assert_eq!(
        rec.fields[EXTERNAL_ID_FIELD],
        json!(canonical_id.to_string())
    );
}

#[tokio::test]
async fn records_sharing_a_systemmodstamp_across_pages_are_all_read() {
    let sim = Sim::start().await.unwrap();
    sim.seed("Contact", 3);
    sim.with(|s| {
        s.frozen = true;
        s.batch_size = 4;
    });
    let same: BTreeSet<String> = sim.seed("Contact", 57).into_iter().collect();
    sim.with(|s| s.frozen = false);
    sim.seed("Contact", 2);
    let c = connector(&sim, json!({"page_size": 10}));
    let (seen, cursor) = read_all(&c, "Contact", None).await;
    assert_eq!(seen.len(), 62, "each record read exactly once");
    let seen: BTreeSet<String> = seen.into_iter().collect();
    assert!(same.is_subset(&seen));
    // Nothing new: the overlap reads the last seconds again (never "now", never further
    // back), and the cursor stays where it is.
    let (again, next) = read_all(&c, "Contact", cursor.clone()).await;
    assert!(again.iter().all(|id| seen.contains(id)));
    assert_eq!(next, cursor);
}

#[tokio::test]
async fn deletions_are_read_through_query_all() {
    let sim = Sim::start().await.unwrap();
    let ids = sim.seed("Account", 2);
    let c = connector(&sim, json!({}));
    let (_, cursor) = read_all(&c, "Account", None).await;
    let r = c
        .push(
            "Account",
            &[PushItem {
                op: PushOp::Delete {
                    external_id: ids[0].clone(),
                },
                fields: Default::default(),
                version: 2,
            }],
        )
        .await
        .unwrap();
    assert_eq!(r[0].as_deref().ok(), Some(ids[0].as_str()));
    // Deleted in the second the cursor already read, with a lower Id than the last record
    // read: only the overlap sees it.
    let f = c.fetch("Account", cursor.as_deref()).await.unwrap();
    assert!(
        f.changes
            .iter()
            .any(|ch| ch.external_id == ids[0] && ch.deleted),
        "{:?}",
        f.changes
    );
    // Deleting again is not an error: it is already what was asked.
    let r = c
        .push(
            "Account",
            &[PushItem {
                op: PushOp::Delete {
                    external_id: ids[0].clone(),
                },
                fields: Default::default(),
                version: 3,
            }],
        )
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{:?}", r[0]);
}

/// "The selected fields come from the mapping": a field only the YAML maps is read.
#[tokio::test]
async fn fields_the_mapping_reads_are_selected() {
    use revsync_sdk::{BuildContext, ConnectorType};
    let sim = Sim::start().await.unwrap();
    let mut fields = revsync_salesforce::sim::sample_fields("Contact", "mapped");
    fields.insert("Department".into(), json!("Research"));
    sim.with(|s| s.insert("Contact", fields));
    let params = sim.params();
    let limits = revsync_sdk::http::RateLimitConfig::default();
    let build = |mapped: std::collections::BTreeMap<String, Vec<String>>| {
        let ctx = BuildContext {
            id: "sf",
            params: &params,
            rate_limit: &limits,
            http: &Default::default(),
            mapped_fields: &mapped,
            objects: &Default::default(),
            shutdown: Default::default(),
        };
        revsync_salesforce::Salesforce.build(&ctx).unwrap().unwrap()
    };
    let plain = build(Default::default())
        .fetch("Contact", None)
        .await
        .unwrap();
    assert!(
        !plain.changes[0].fields.contains_key("Department"),
        "not mapped, not selected"
    );
    let mapped = [("Contact".to_owned(), vec!["Department".to_owned()])]
        .into_iter()
        .collect();
    let read = build(mapped).fetch("Contact", None).await.unwrap();
    assert_eq!(read.changes[0].fields["Department"], json!("Research"));
}

/// The connector as the daemon builds it (default retry policy, `timeout_ms` honoured).
fn built(sim: &Sim, extra: Value) -> Arc<dyn Connector> {
    built_with(sim, extra, &Default::default())
}

/// [`built`] with the connector file's `http:` section.
fn built_with(sim: &Sim, extra: Value, http: &revsync_sdk::http::HttpConfig) -> Arc<dyn Connector> {
    use revsync_sdk::{BuildContext, ConnectorType};
    let mut params = sim.params();
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        params[k] = v;
    }
    let ctx = BuildContext {
        id: "sf",
        params: &params,
        rate_limit: &revsync_sdk::http::RateLimitConfig::default(),
        http,
        mapped_fields: &Default::default(),
        objects: &Default::default(),
        shutdown: Default::default(),
    };
    revsync_salesforce::Salesforce.build(&ctx).unwrap().unwrap()
}

/// The file's `http.max_response_bytes` reaches the clients: a page over it is refused
/// as permanent, not held in memory.
#[tokio::test]
async fn a_page_over_the_configured_body_cap_is_refused() {
    let sim = Sim::start().await.unwrap();
    sim.seed("Contact", 50);
    let http = revsync_sdk::http::HttpConfig {
        max_response_bytes: Some(4096),
    };
    let err = built_with(&sim, json!({}), &http)
        .fetch("Contact", None)
        .await
        .expect_err("50 contacts are more than 4 KiB");
    match err {
        ConnectorError::Permanent { detail, .. } => {
            assert!(
                detail.contains("http.max_response_bytes (4096)"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(built(&sim, json!({})).fetch("Contact", None).await.is_ok());
}

#[tokio::test]
async fn concurrent_limit_bursts_are_absorbed_without_touching_the_daily_quota() {
    let sim = Sim::start().await.unwrap();
    let seeded: BTreeSet<String> = sim.seed("Contact", 12).into_iter().collect();
    sim.with(|s| s.batch_size = 4);
    sim.faults().set(FaultPlan {
        throttle: 0.3,
        throttle_burst: 2,
        seed: 5,
        ..FaultPlan::default()
    });
    let c = built(&sim, json!({"page_size": 10}));
    let mut cursor: Option<String> = None;
    let mut seen = BTreeSet::new();
    loop {
        let f = c.fetch("Contact", cursor.as_deref()).await.expect("fetch");
        seen.extend(f.changes.into_iter().map(|ch| ch.external_id));
        cursor = f.cursor.or(cursor);
        if !f.more {
            break;
        }
    }
    assert_eq!(seen, seeded);
    assert!(
        sim.faults().counts().throttled >= 2,
        "no burst was injected"
    );
    assert!(c.rate_limit().unwrap().throttled_429 >= 2);
    // A concurrent-limit 403 is not the daily allocation: nothing pauses.
    sim.faults().clear();
    assert!(c.fetch("Account", None).await.is_ok());
}

#[tokio::test]
async fn a_create_whose_answer_was_cut_or_stalled_leaves_one_record() {
    let sim = Sim::start().await.unwrap();
    // Shorter than the stall: the client gives up on upserts that were applied.
    let c = built(&sim, json!({"timeout_ms": 200}));
    // Log in cleanly first: the faults are for the write.
    c.fetch("Contact", None).await.unwrap();
    let item = create(sample_fields("Contact", "ambiguous"));
    for plan in [
        FaultPlan {
            malformed: 1.0,
            ..FaultPlan::default()
        },
        FaultPlan {
            stall: 1.0,
            stall_for: Duration::from_millis(600),
            ..FaultPlan::default()
        },
    ] {
        sim.faults().set(plan);
        let e = c
            .push("Contact", std::slice::from_ref(&item))
            .await
            .expect_err("the answer never arrived whole");
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(sim.ids("Contact").len(), 1, "the work was done once");
    }
    sim.faults().clear();
    let r = c
        .push("Contact", std::slice::from_ref(&item))
        .await
        .unwrap();
    let id = r[0].as_ref().unwrap();
    assert_eq!(
        sim.ids("Contact"),
        BTreeSet::from([id.clone()]),
        "a retried create made a second record"
    );
}

/// A delete naming something that is not a Salesforce id fails alone: the other items
/// of its batch are still sent and answered.
#[tokio::test]
async fn a_malformed_delete_id_fails_only_its_own_item() {
    let sim = Sim::start().await.unwrap();
    let ids = sim.seed("Account", 1);
    let c = connector(&sim, json!({}));
    let item = |op| PushItem {
        op,
        fields: Default::default(),
        version: 2,
    };
    let r = c
        .push(
            "Account",
            &[
                item(PushOp::Delete {
                    external_id: "not-an-id".into(),
                }),
                item(PushOp::Delete {
                    external_id: ids[0].clone(),
                }),
            ],
        )
        .await
        .expect("per-item answers");
    assert!(
        matches!(&r[0], Err(ConnectorError::Permanent { detail, .. }) if detail.contains("not a Salesforce id")),
        "{r:?}"
    );
    assert_eq!(r[1].as_deref().ok(), Some(ids[0].as_str()), "{r:?}");
}

/// Issue 17: the overlap must not hand the same records to the engine poll after poll,
/// yet a record committed late into a second already read (a lower Id, or the same record
/// edited again within the second) is still read.
#[tokio::test]
async fn records_already_handed_out_are_dropped_but_late_commits_in_their_second_are_read() {
    let sim = Sim::start().await.unwrap();
    let first = sim.seed("Contact", 1);
    // Writes from now on keep the first record's stamp: one recent second, still open.
    sim.with(|s| s.frozen = true);
    let c = connector(&sim, json!({}));
    let ids = |f: &revsync_sdk::Fetched| -> Vec<String> {
        f.changes.iter().map(|ch| ch.external_id.clone()).collect()
    };
    let f = c.fetch("Contact", None).await.unwrap();
    assert_eq!(ids(&f), first);
    let mut cursor = f.cursor;

    // Committed after that read, in the same SystemModstamp second.
    let second = sim.seed("Contact", 1);
    let f = c.fetch("Contact", cursor.as_deref()).await.unwrap();
    assert_eq!(ids(&f), second, "only the record not read before");
    cursor = f.cursor;

    // A long transaction that began in that second commits now, with a lower Id than any
    // record read; and the first record is edited again within the same second.
    let late = "003000000000000LTE".to_owned();
    sim.with(|s| {
        let mut rec = s.records[&first[0]].clone();
        rec.id = late.clone();
        rec.fields = sample_fields("Contact", "late");
        s.records.insert(late.clone(), rec);
        let edited = s.records.get_mut(&first[0]).unwrap();
        edited.fields.insert("Title".into(), json!("CTO"));
    });
    let f = c.fetch("Contact", cursor.as_deref()).await.unwrap();
    let got: BTreeSet<String> = ids(&f).into_iter().collect();
    assert_eq!(got, BTreeSet::from([late, first[0].clone()]));
    cursor = f.cursor;

    // Nothing changed: one request, nothing for the engine, the cursor unmoved.
    let used = sim.with(|s| s.api_used);
    let f = c.fetch("Contact", cursor.as_deref()).await.unwrap();
    assert!(f.changes.is_empty(), "{:?}", ids(&f));
    assert_eq!(f.cursor, cursor);
    assert_eq!(sim.with(|s| s.api_used) - used, 1);
}

/// Once a second is older than the overlap, the read moves past it: an idle poll asks for
/// nothing already read, so the answer is empty.
#[tokio::test]
async fn an_idle_read_past_the_overlap_asks_for_nothing_already_read() {
    let sim = Sim::start().await.unwrap();
    // The simulator's clock starts in 2024: these records are long settled.
    sim.with(|s| s.frozen = true);
    sim.seed("Account", 5);
    let c = connector(&sim, json!({}));
    let (seen, cursor) = read_all(&c, "Account", None).await;
    assert_eq!(seen.len(), 5);
    let served = sim.with(|s| s.records_served);
    let f = c.fetch("Account", cursor.as_deref()).await.unwrap();
    assert!(f.changes.is_empty());
    assert_eq!(sim.with(|s| s.records_served) - served, 0);
}

fn field<'a>(schema: &'a revsync_sdk::ObjectSchema, name: &str) -> &'a revsync_sdk::FieldSchema {
    schema
        .fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{} has no field {name}", schema.name))
}

/// `revsync discover`: sObject describe through the connector, as Salesforce flags it.
#[tokio::test]
async fn describe_shows_required_read_only_custom_picklist_and_reference_fields() {
    let sim = Sim::start().await.unwrap();
    let c = built(&sim, json!({}));
    let used = sim.with(|s| s.api_used);

    let lead = c.describe("Lead").await.unwrap();
    assert_eq!(lead.label.as_deref(), Some("Lead"));
    for required in ["LastName", "Company"] {
        assert!(field(&lead, required).required, "Lead.{required}");
    }
    let status = field(&lead, "Status");
    assert!(!status.required, "the org fills Status in");
    assert_eq!(status.ty, "picklist");
    assert!(status.options.contains(&"Open - Not Contacted".to_owned()));
    for system in [
        "Id",
        "SystemModstamp",
        "LastModifiedDate",
        "ConvertedContactId",
    ] {
        assert!(field(&lead, system).read_only, "Lead.{system}");
    }
    assert_eq!(field(&lead, "ConvertedContactId").references, ["Contact"]);
    assert!(field(&lead, "Lead_Score__c").custom);
    let ext = field(&lead, EXTERNAL_ID_FIELD);
    assert!(ext.custom && !ext.read_only && !ext.required);
    assert!(!field(&lead, "Email").custom && !field(&lead, "Email").required);

    let contact = c.describe("Contact").await.unwrap();
    assert_eq!(field(&contact, "AccountId").references, ["Account"]);
    assert_eq!(field(&contact, "AccountId").ty, "reference");
    assert!(field(&contact, "LastName").required);
    assert_eq!(
        field(&contact, "Customer_Tier__c").options,
        ["Bronze", "Silver", "Gold"],
        "an inactive value is not offered"
    );

    let opportunity = c.describe("Opportunity").await.unwrap();
    for required in ["Name", "StageName", "CloseDate"] {
        assert!(
            field(&opportunity, required).required,
            "Opportunity.{required}"
        );
    }
    assert!(field(&opportunity, "StageName")
        .options
        .contains(&"Prospecting".to_owned()));
    assert_eq!(field(&opportunity, "Amount").ty, "currency");
    assert!(field(&opportunity, "IsWon").read_only);
    assert!(field(&opportunity, "ExpectedRevenue").read_only);
    let account = c.describe("Account").await.unwrap();
    assert!(field(&account, "Name").required);
    assert!(field(&account, "Region__c").custom);
    // The connector's own list of required fields agrees with what describe says.
    for object in revsync_salesforce::mapping::OBJECTS {
        let schema = c.describe(object).await.unwrap();
        let mut said: Vec<&str> = schema
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name.as_str())
            .collect();
        said.sort_unstable();
        let mut known = revsync_sdk::ConnectorType::required_for_create(
            &revsync_salesforce::Salesforce,
            object,
        )
        .to_vec();
        known.sort_unstable();
        assert_eq!(said, known, "{object}");
    }
    assert_eq!(sim.with(|s| s.api_used) - used, 8, "one call a describe");
}

/// An sObject the connector does not serve is refused before any call; the simulator
/// answers an unknown one with Salesforce's 404, behind its token gate.
#[tokio::test]
async fn describing_an_unknown_sobject_fails_as_salesforce_says() {
    let sim = Sim::start().await.unwrap();
    let c = built(&sim, json!({}));
    match c.describe("Case").await {
        Err(ConnectorError::Permanent { detail, .. }) => {
            assert!(
                detail.contains("Case") && detail.contains("Lead"),
                "{detail}"
            )
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }

    let http = reqwest::Client::new();
    let token = sim_token(&sim).await;
    let token = token.as_str();
    let url = |object: &str| {
        format!(
            "{}/services/data/v66.0/sobjects/{object}/describe",
            sim.url()
        )
    };
    let r = http
        .get(url("Case"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("sforce-limit-info"));
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body,
        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
    );
    let r = http.get(url("Lead")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A describe spends the org's daily allocation like a query: once it is gone, describe
/// waits with everything else.
#[tokio::test]
async fn describe_is_refused_once_the_daily_allocation_is_spent() {
    let sim = Sim::start().await.unwrap();
    sim.with(|s| {
        s.api_max = 50;
        s.api_used = 50;
    });
    let e = built(&sim, json!({})).describe("Lead").await.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectorError::RateLimited {
                scope: LimitScope::Daily | LimitScope::Reserve,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A custom `__c` field an operator maps from what describe showed is selected, read back
/// by both reads, and written.
#[tokio::test]
async fn a_mapped_custom_field_is_selected_written_and_read() {
    use revsync_sdk::{BuildContext, ConnectorType};
    let sim = Sim::start().await.unwrap();
    let params = sim.params();
    let limits = revsync_sdk::http::RateLimitConfig::default();
    let mapped = [(
        "Contact".to_owned(),
        vec!["Customer_Tier__c".to_owned(), "Email".to_owned()],
    )]
    .into_iter()
    .collect();
    let c = revsync_salesforce::Salesforce
        .build(&BuildContext {
            id: "sf",
            params: &params,
            rate_limit: &limits,
            http: &Default::default(),
            mapped_fields: &mapped,
            objects: &Default::default(),
            shutdown: Default::default(),
        })
        .unwrap()
        .unwrap();
    let mut fields = sample_fields("Contact", "tiered");
    fields.insert("Customer_Tier__c".into(), json!("Gold"));
    let id = c.push("Contact", &[create(fields)]).await.unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(
        sim.record(&id).unwrap().fields["Customer_Tier__c"],
        json!("Gold")
    );
    let read = c.fetch("Contact", None).await.unwrap();
    let change = read.changes.iter().find(|ch| ch.external_id == id).unwrap();
    assert_eq!(change.fields["Customer_Tier__c"], json!("Gold"));
    let by_id = c.fetch_by_ids("Contact", &[id]).await.unwrap();
    assert_eq!(by_id[0].fields["Customer_Tier__c"], json!("Gold"));
}

/// An access token of the simulated org, as a script would get one.
async fn sim_token(sim: &Sim) -> String {
    use revsync_salesforce::sim::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
    let token = reqwest::Client::new()
        .post(sim.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={REFRESH_TOKEN}"
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let token: Value = serde_json::from_slice(&token).unwrap();
    token["access_token"].as_str().unwrap().to_owned()
}

fn at(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn fields(pairs: Value) -> serde_json::Map<String, Value> {
    pairs.as_object().cloned().unwrap()
}

/// An Opportunity opened Jan 5 2024 at 1,000, qualified at 1,500 on Feb 1, its
/// probability edited Feb 20 (no history row), won Mar 10, renamed Mar 12 (no row).
fn won_opportunity(sim: &Sim) -> String {
    sim.with(|s| {
        let id = s.insert_at(
            "Opportunity",
            fields(json!({"Name": "Acme", "StageName": "Prospecting", "Amount": 1000.0, "CloseDate": "2024-04-30"})),
            at("2024-01-05T09:00:00Z"),
        );
        for (when, change) in [
            ("2024-02-01T10:00:00Z", json!({"StageName": "Qualification", "Amount": 1500.0})),
            ("2024-02-20T10:00:00Z", json!({"Probability": 20})),
            ("2024-03-10T15:00:00Z", json!({"StageName": "Closed Won", "CloseDate": "2024-03-10"})),
            ("2024-03-12T08:00:00Z", json!({"Name": "Acme (won)"})),
        ] {
            s.update_at(&id, fields(change), at(when));
        }
        id
    })
}

#[tokio::test]
async fn a_backfilled_opportunity_brings_each_past_stage_from_opportunity_history() {
    let sim = Sim::start().await.unwrap();
    let id = won_opportunity(&sim);
    let c = connector(&sim, json!({}));
    let f = c.fetch("Opportunity", None).await.expect("fetch");
    let seen: Vec<(String, Value, Value, Value, Value)> = f
        .changes
        .iter()
        .filter(|ch| ch.external_id == id)
        .map(|ch| {
            (
                ch.source_updated_at.to_rfc3339(),
                ch.fields["StageName"].clone(),
                ch.fields["Amount"].clone(),
                ch.fields["CloseDate"].clone(),
                ch.fields["Name"].clone(),
            )
        })
        .collect();
    let name = json!("Acme (won)");
    assert_eq!(
        seen,
        vec![
            (
                "2024-01-05T09:00:00+00:00".into(),
                json!("Prospecting"),
                json!(1000.0),
                json!("2024-04-30"),
                name.clone()
            ),
            (
                "2024-02-01T10:00:00+00:00".into(),
                json!("Qualification"),
                json!(1500.0),
                json!("2024-04-30"),
                name.clone()
            ),
            (
                "2024-03-10T15:00:00+00:00".into(),
                json!("Closed Won"),
                json!(1500.0),
                json!("2024-03-10"),
                name.clone()
            ),
            // Today's state, as of its own SystemModstamp.
            (
                "2024-03-12T08:00:00+00:00".into(),
                json!("Closed Won"),
                json!(1500.0),
                json!("2024-03-10"),
                name
            ),
        ]
    );
    // Caught up: the next read follows changes alone, and asks no history.
    let before = sim.with(|s| s.records_served);
    sim.with(|s| {
        s.update_at(
            &id,
            fields(json!({"StageName": "Closed Lost"})),
            at("2024-03-13T08:00:00Z"),
        )
    });
    let next = c
        .fetch("Opportunity", f.cursor.as_deref())
        .await
        .expect("fetch");
    assert!(next.changes.len() <= 1, "{:#?}", next.changes);
    assert!(sim.with(|s| s.records_served) - before <= 1);
}

#[tokio::test]
async fn the_simulator_keeps_opportunity_history_rows_and_answers_their_soql() {
    let sim = Sim::start().await.unwrap();
    let id = won_opportunity(&sim);
    let q = format!(
        "SELECT OpportunityId, StageName, Amount, CloseDate, CreatedDate FROM OpportunityHistory WHERE OpportunityId IN ('{id}') ORDER BY CreatedDate"
    );
    let r = reqwest::Client::new()
        .get(format!("{}/services/data/v59.0/query", sim.url()))
        .query(&[("q", q.as_str())])
        .bearer_auth(sim_token(&sim).await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let rows: Vec<(&str, &str)> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["CreatedDate"].as_str().unwrap(),
                r["StageName"].as_str().unwrap(),
            )
        })
        .collect();
    // One row on create and one per change of StageName, Amount or CloseDate.
    assert_eq!(
        rows,
        [
            ("2024-01-05T09:00:00.000+0000", "Prospecting"),
            ("2024-02-01T10:00:00.000+0000", "Qualification"),
            ("2024-03-10T15:00:00.000+0000", "Closed Won"),
        ]
    );
    assert_eq!(
        body["records"][0]["attributes"]["type"],
        "OpportunityHistory"
    );
}
