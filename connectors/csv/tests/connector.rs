//! The `type: csv` connector against real files: incremental reads, broken rows, pages,
//! write-back without echo, and a write that waits for an edit it has not read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;

use revsync_csv::{config::Params, CsvConnector};
use revsync_sdk::{Connector, ConnectorError, Fetched, Kind, ObjectDecl, PushItem, PushOp};
use serde_json::json;

fn connector(dir: &Path, extra: serde_json::Value, key: Option<&str>) -> CsvConnector {
    let mut params = json!({ "dir": dir });
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let params = Params::parse(&params).unwrap();
    let objects = BTreeMap::from([(
        "people".to_owned(),
        ObjectDecl {
            kind: Kind::Person,
            key: key.map(str::to_owned),
            read: true,
            write: true,
        },
    )]);
    CsvConnector::new(&params, &objects)
}

/// Every page until the read is done: the changes, the rejected, and the last cursor.
async fn read_all(c: &CsvConnector, cursor: Option<String>) -> (Fetched, Option<String>) {
    let mut all = Fetched::default();
    let mut cursor = cursor;
    loop {
        let page = c.fetch("people", cursor.as_deref()).await.unwrap();
        all.changes.extend(page.changes);
        all.rejected.extend(page.rejected);
        all.invalid.extend(page.invalid);
        cursor = page.cursor.or(cursor);
        if !page.more {
            return (all, cursor);
        }
    }
}

fn ids(f: &Fetched) -> Vec<(&str, bool)> {
    f.changes
        .iter()
        .map(|c| (c.external_id.as_str(), c.deleted))
        .collect()
}

/// Edits within the same second as the last read: the content decides, not size and time.
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn an_edit_of_two_rows_applies_two_changes_and_a_deleted_row_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    write(
        &file,
        "id,email,first_name\n1,a@x.test,Ann\n2,b@x.test,Bob\n3,c@x.test,Cy\n4,d@x.test,Di\n",
    );
    let c = connector(dir.path(), json!({}), Some("id"));
    let (first, cursor) = read_all(&c, None).await;
    assert_eq!(ids(&first).len(), 4);
    assert_eq!(first.changes[0].fields["email"], "a@x.test");
    assert!(cursor.is_some());

    let (idle, same) = read_all(&c, cursor.clone()).await;
    assert!(idle.changes.is_empty());
    assert_eq!(same, cursor);

    write(
        &file,
        "id,email,first_name\n1,a@x.test,Anne\n2,b@x.test,Bob\n3,c2@x.test,Cy\n4,d@x.test,Di\n",
    );
    let (two, cursor) = read_all(&c, cursor).await;
    assert_eq!(ids(&two), [("1", false), ("3", false)]);
    assert_eq!(two.changes[0].fields["first_name"], "Anne");

    write(
        &file,
        "id,email,first_name\n1,a@x.test,Anne\n3,c2@x.test,Cy\n4,d@x.test,\n",
    );
    let (gone, cursor) = read_all(&c, cursor).await;
    assert_eq!(ids(&gone), [("4", false), ("2", true)]);
    assert_eq!(
        gone.changes[0].fields["first_name"],
        serde_json::Value::Null
    );

    // A new process on the file it last applied reads nothing again.
    let again = connector(dir.path(), json!({}), Some("id"));
    let (nothing, _) = read_all(&again, cursor).await;
    assert!(nothing.changes.is_empty(), "{:?}", ids(&nothing));
}

#[tokio::test]
async fn a_broken_row_is_reported_once_with_file_and_line_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    write(
        &file,
        "id,email\n1,a@x.test\n2,b@x.test,extra\n3,c@x.test\n",
    );
    let c = connector(dir.path(), json!({}), Some("id"));
    let (read, cursor) = read_all(&c, None).await;
    assert_eq!(ids(&read), [("1", false), ("3", false)]);
    assert_eq!(read.rejected.len(), 1);
    let r = &read.rejected[0];
    assert_eq!(r.external_id.as_deref(), Some("2"));
    assert!(
        r.error
            .ends_with("people.csv: line 3: 3 fields where the header has 2"),
        "{}",
        r.error
    );
    let raw: serde_json::Value = serde_json::from_str(&r.raw).unwrap();
    assert_eq!(raw["email"], "b@x.test");

    // Another row changes; the broken one is not reported again, nor taken as deleted.
    write(
        &file,
        "id,email\n1,a2@x.test\n2,b@x.test,extra\n3,c@x.test\n",
    );
    let (next, _) = read_all(&c, cursor).await;
    assert_eq!(ids(&next), [("1", false)]);
    assert!(next.rejected.is_empty());
}

#[tokio::test]
async fn a_big_file_is_applied_in_pages_and_the_cursor_moves_with_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("id,email\n");
    for i in 0..5 {
        text.push_str(&format!("{i},p{i}@x.test\n"));
    }
    write(&dir.path().join("people.csv"), &text);
    let c = connector(dir.path(), json!({"page_rows": 2}), Some("id"));
    let mut cursors = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor = None;
    loop {
        let page = c.fetch("people", cursor.as_deref()).await.unwrap();
        sizes.push(page.changes.len());
        cursors.push(page.cursor.clone());
        cursor = page.cursor.or(cursor);
        if !page.more {
            break;
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(cursors[..2], [None, None]);
    assert!(cursors[2].is_some());
}

#[tokio::test]
async fn write_back_updates_and_creates_and_does_not_read_its_own_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    write(&file, "email,first_name\r\na@x.test,Ann\r\n");
    let c = connector(dir.path(), json!({"write_back": true}), Some("email"));
    assert!(c.capabilities().objects[0].write);
    let (_, cursor) = read_all(&c, None).await;
    let created = uuid::Uuid::now_v7();
    let items = [
        PushItem {
            op: PushOp::Update {
                external_id: "a@x.test".into(),
            },
            fields: BTreeMap::from([("first_name".into(), json!("Annie"))]),
            version: 2,
        },
        PushItem {
            op: PushOp::Create {
                canonical_id: created,
            },
            fields: BTreeMap::from([
                ("email".into(), json!("new@x.test")),
                ("first_name".into(), json!("New")),
            ]),
            version: 1,
        },
    ];
    let results = c.push("people", &items).await.unwrap();
    assert_eq!(results, [Ok("a@x.test".into()), Ok("new@x.test".into())]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("email,first_name,revsync_id\r\na@x.test,Annie,\r\nnew@x.test,New,{created}\r\n")
    );
    let (echo, cursor) = read_all(&c, cursor).await;
    assert!(echo.changes.is_empty(), "{:?}", ids(&echo));

    // An edit the connector has not read yet is never written over: the push waits.
    write(
        &file,
        "email,first_name,revsync_id\r\na@x.test,Ann-Marie,\r\n",
    );
    let err = c.push("people", &items[..1]).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Transient(_)), "{err:?}");
    let (edit, _) = read_all(&c, cursor).await;
    assert_eq!(ids(&edit), [("a@x.test", false), ("new@x.test", true)]);
    c.push("people", &items[..1]).await.unwrap();
}

#[tokio::test]
async fn a_missing_file_is_nothing_to_read_and_write_back_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path(), json!({"write_back": true}), Some("email"));
    let (none, cursor) = read_all(&c, None).await;
    assert!(none.changes.is_empty());
    assert_eq!(cursor, None);
    let id = uuid::Uuid::now_v7();
    c.push(
        "people",
        &[PushItem {
            op: PushOp::Create { canonical_id: id },
            fields: BTreeMap::from([("email".into(), json!("a@x.test"))]),
            version: 1,
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("people.csv")).unwrap(),
        format!("email,revsync_id\na@x.test,{id}\n")
    );
}

#[tokio::test]
async fn without_write_back_a_push_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path(), json!({}), Some("id"));
    assert!(!c.capabilities().objects[0].write);
    let err = c.push("people", &[]).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Permanent { .. }), "{err:?}");
}
