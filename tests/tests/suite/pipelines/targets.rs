//! Pipelines: every kind of target the planner can write — a partitioned table, a view with
//! INSTEAD OF triggers, a table with triggers and foreign keys — with and without a transform,
//! and a transform's staging table declared column by column (`batch_columns`).

use super::*;
use e2e::*;

#[test]
fn a_partitioned_table_takes_rows_by_copy_and_by_transform_and_a_row_without_partition_is_a_reject()
{
    let mut c = Cluster::start(ClusterOptions::default());
    let (plain, upsert) = (folder(&c, "plain"), folder(&c, "upsert"));
    c.execute(
        "CREATE TABLE m (id int, at date, qty int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE m_2026_01 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
         CREATE TABLE m_2026_02 PARTITION OF m FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');",
    );
    create_with(
        &mut c,
        "plain",
        &plain,
        "m",
        r#"{"trigger_interval": 100}"#,
        None,
    );
    put(
        &plain,
        "a.csv",
        "id,at,qty\n1,2026-01-05,1\n2,2026-02-05,2\n3,2027-01-01,3\n4,2026-01-31,4\n",
    );
    wait_done(&mut c, "plain", 1);
    // Rows went to their partitions; the one with no partition is a reject, with its line.
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT tableoid::regclass::text, id::text FROM m ORDER BY id"
        ),
        vec![
            vec![s("m_2026_01"), s("1")],
            vec![s("m_2026_02"), s("2")],
            vec![s("m_2026_01"), s("4")],
        ]
    );
    let r = rejects(&mut c, "plain");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].1, 4);
    assert!(
        r[0].3.contains("no partition of relation") && r[0].3.contains("23514"),
        "{r:?}"
    );

    // An upsert into the partitioned table, by its key (which includes the partition key).
    let t = "INSERT INTO public.m AS t SELECT * FROM $batch
             ON CONFLICT (id, at) DO UPDATE SET qty = t.qty + EXCLUDED.qty";
    create_with(
        &mut c,
        "upsert",
        &upsert,
        "m",
        r#"{"trigger_interval": 100}"#,
        Some(t),
    );
    put(
        &upsert,
        "b.csv",
        "id,at,qty\n1,2026-01-05,10\n5,2026-02-10,5\n",
    );
    wait_done(&mut c, "upsert", 1);
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT tableoid::regclass::text, id::text, qty::text FROM m ORDER BY id"
        ),
        vec![
            vec![s("m_2026_01"), s("1"), s("11")],
            vec![s("m_2026_02"), s("2"), s("2")],
            vec![s("m_2026_01"), s("4"), s("4")],
            vec![s("m_2026_02"), s("5"), s("5")],
        ]
    );
    // Through a transform, a row without partition fails its file (a transform's error), whole.
    put(
        &upsert,
        "c.csv",
        "id,at,qty\n6,2026-01-06,6\n7,2030-01-01,7\n",
    );
    wait_settled(&mut c, "upsert", 2);
    let l = ledger(&mut c, "upsert");
    assert_eq!((l[1].0.as_str(), l[1].1.as_str()), ("c.csv", "failed"));
    let err = l[1].5.clone().unwrap_or_default();
    assert!(
        err.contains("no partition") && err.contains("23514"),
        "{err}"
    );
    assert_eq!(c.int("SELECT count(*) FROM m WHERE id IN (6, 7)"), 0);
    assert_consistent(&mut c, "plain");
    assert_consistent(&mut c, "upsert");
}

#[test]
fn a_view_with_instead_of_triggers_takes_rows_with_or_without_a_transform() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "v");
    // The view fans each row out into two tables; its trigger refuses a negative quantity.
    c.execute(
        "CREATE TABLE orders_base (id int PRIMARY KEY, qty int);
         CREATE TABLE orders_audit (id int, seen int);
         CREATE VIEW orders_v AS SELECT id, qty FROM orders_base;
         CREATE FUNCTION orders_v_ins() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           IF NEW.qty < 0 THEN
             RAISE EXCEPTION 'negative quantity % for order %', NEW.qty, NEW.id;
           END IF;
           INSERT INTO public.orders_base VALUES (NEW.id, NEW.qty);
           INSERT INTO public.orders_audit VALUES (NEW.id, 1);
           RETURN NEW;
         END $f$;
         CREATE TRIGGER orders_v_ins INSTEAD OF INSERT ON orders_v
           FOR EACH ROW EXECUTE FUNCTION orders_v_ins();",
    );
    create_with(
        &mut c,
        "v",
        &dir,
        "orders_v",
        r#"{"trigger_interval": 100}"#,
        Some("INSERT INTO public.orders_v SELECT * FROM $batch"),
    );
    put(&dir, "1.csv", "id,qty\n1,5\n2,7\n");
    put(&dir, "2.csv", "id,qty\n3,1\n4,-2\n");
    put(&dir, "3.csv", "id,qty\n5,9\n");
    wait_settled(&mut c, "v", 3);
    let l = ledger(&mut c, "v");
    let got: Vec<(&str, &str, i64)> = l
        .iter()
        .map(|f| (f.0.as_str(), f.1.as_str(), f.2))
        .collect();
    assert_eq!(
        got,
        vec![
            ("1.csv", "done", 2),
            ("2.csv", "failed", 0),
            ("3.csv", "done", 1)
        ]
    );
    let err = l[1].5.clone().unwrap_or_default();
    assert!(
        err.contains("negative quantity -2 for order 4") && err.contains("P0001"),
        "{err}"
    );
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT b.id::text, b.qty::text, a.seen::text FROM orders_base b JOIN orders_audit a USING (id) ORDER BY id"
        ),
        vec![
            vec![s("1"), s("5"), s("1")],
            vec![s("2"), s("7"), s("1")],
            vec![s("5"), s("9"), s("1")],
        ]
    );
    // Without a transform, the rows go in through the view too (an INSERT … SELECT, never
    // COPY): the row its trigger refuses is a reject of its own, the others land.
    let plain = folder(&c, "plain");
    create(
        &mut c,
        "plain",
        &plain,
        "orders_v",
        "csv",
        r#"{"trigger_interval": 100}"#,
    );
    put(&plain, "p.csv", "id,qty\n10,1\n11,-5\n12,2\n");
    wait_done(&mut c, "plain", 1);
    assert_eq!(
        ledger(&mut c, "plain")
            .iter()
            .map(|f| (f.1.as_str(), f.2, f.3))
            .collect::<Vec<_>>(),
        vec![("done", 2, 1)]
    );
    let r = rejects(&mut c, "plain");
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].1 == 3 && r[0].3.contains("negative quantity -5 for order 11"),
        "{r:?}"
    );
    assert_eq!(
        c.int("SELECT count(*) FROM orders_base WHERE id IN (10, 12)"),
        2
    );
    // A view that cannot take INSERTs is refused when the pipeline is created, with the way out,
    // and when a transform that wrote elsewhere is removed.
    c.execute("CREATE VIEW totals AS SELECT count(*) AS n FROM orders_base");
    let e = c
        .client()
        .batch_execute(&create_sql("noview", &plain, "totals", "csv", "{}"))
        .unwrap_err();
    let d = e.as_db_error().expect("a database error");
    assert!(
        d.message().contains("does not take INSERTs")
            && d.hint().unwrap_or("").contains("INSTEAD OF INSERT"),
        "{d:?}"
    );
    let elsewhere = folder(&c, "elsewhere");
    create_with(
        &mut c,
        "tot",
        &elsewhere,
        "totals",
        "{}",
        Some("INSERT INTO public.orders_audit SELECT n::int, 0 FROM $batch"),
    );
    let e = c
        .client()
        .batch_execute("SELECT ingest_alter_pipeline('tot', transform => '')")
        .unwrap_err();
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("does not take INSERTs")),
        "{e:?}"
    );
    assert_consistent(&mut c, "v");
    assert_consistent(&mut c, "plain");
}

#[test]
fn rows_a_tables_triggers_or_foreign_keys_refuse_on_the_insert_path_are_rejects_and_the_others_land(
) {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "sales");
    // dedup_key sends the rows through the staging table and an INSERT … SELECT … ON CONFLICT
    // (not COPY): a row refused there must be a reject of its own, as with COPY.
    c.execute(
        "CREATE TABLE products (id int PRIMARY KEY); INSERT INTO products VALUES (1), (2);
         CREATE TABLE sales (id int PRIMARY KEY, product int REFERENCES products, qty int);
         CREATE FUNCTION sales_check() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           PERFORM pg_advisory_lock(4242);
           IF NEW.qty = 13 THEN RAISE EXCEPTION 'unlucky quantity'; END IF;
           NEW.qty := NEW.qty * 10;
           RETURN NEW;
         END $f$;
         CREATE TRIGGER sales_check BEFORE INSERT ON sales FOR EACH ROW EXECUTE FUNCTION sales_check();
         INSERT INTO sales VALUES (100, 1, 1);
         SELECT pg_advisory_unlock_all();",
    );
    create_with(
        &mut c,
        "sales",
        &dir,
        "sales",
        r#"{"trigger_interval": 100, "dedup_key": ["id"]}"#,
        None,
    );
    put(
        &dir,
        "a.csv",
        "id,product,qty\n1,1,1\n2,9,2\n3,2,3\n4,1,13\n100,2,5\n5,2,5\n1,2,6\n",
    );
    wait_settled(&mut c, "sales", 1);
    let l = ledger(&mut c, "sales");
    // 1, 3, 5 land; 2 (no product 9) and 4 (the trigger) are rejects; 100 (already there) and
    // the second 1 (earlier in the file) are duplicates.
    assert_eq!(
        (l[0].1.as_str(), l[0].2, l[0].3, l[0].4),
        ("done", 3, 2, 2),
        "{l:?}"
    );
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT id::text, product::text, qty::text FROM sales ORDER BY sales.id"
        ),
        vec![
            vec![s("1"), s("1"), s("10")],
            vec![s("3"), s("2"), s("30")],
            vec![s("5"), s("2"), s("50")],
            vec![s("100"), s("1"), s("10")],
        ]
    );
    let r = rejects(&mut c, "sales");
    assert_eq!(
        r.iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![3, 5],
        "{r:?}"
    );
    assert!(
        r[0].3.contains("foreign key") && r[0].3.contains("23503"),
        "{r:?}"
    );
    assert!(
        r[1].3.contains("unlucky quantity") && r[1].3.contains("P0001"),
        "{r:?}"
    );
    // The rejects keep the file's own text of the row.
    assert_eq!(
        c.text("SELECT raw_text FROM ingest_rejects WHERE pipeline = 'sales' AND line_number = 3"),
        Some("2,9,2".into())
    );
    // The session advisory lock the trigger took did not outlive the chunk in the worker.
    let pid = pstatus(&mut c, "sales").worker_pid.unwrap_or(0);
    assert_eq!(
        c.int(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = {pid}"
        )),
        0
    );

    // Every row of a file refused: each a reject, none lost, none in.
    let mut all_bad = String::from("id,product,qty\n");
    for i in 0..600 {
        all_bad += &format!("{},9,1\n", 1000 + i);
    }
    put(&dir, "b.csv", &all_bad);
    // The first refused row decides a fail_file pipeline's file.
    let strict = folder(&c, "strict");
    create_with(
        &mut c,
        "strict",
        &strict,
        "sales",
        r#"{"trigger_interval": 100, "dedup_key": ["id"], "on_error": "fail_file"}"#,
        None,
    );
    put(&strict, "s.csv", "id,product,qty\n50,1,1\n51,9,1\n52,1,1\n");
    wait_settled(&mut c, "sales", 2);
    wait_settled(&mut c, "strict", 1);
    let l = ledger(&mut c, "sales");
    assert_eq!((l[1].1.as_str(), l[1].2, l[1].3), ("done", 0, 600), "{l:?}");
    let l = ledger(&mut c, "strict");
    assert_eq!(l[0].1, "failed", "{l:?}");
    assert!(
        l[0].5.clone().unwrap_or_default().contains("fail_file"),
        "{l:?}"
    );
    assert_eq!(
        c.int("SELECT count(*) FROM sales WHERE id >= 50 AND id < 100 OR id >= 1000"),
        0
    );
    assert_consistent(&mut c, "sales");
}

#[test]
fn batch_columns_shape_the_staging_table_of_an_enriching_transform() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "lines");
    c.execute(
        "CREATE TABLE products (sku text PRIMARY KEY, id int);
         INSERT INTO products VALUES ('a', 1), ('b', 2);
         CREATE TABLE order_lines (product_id int NOT NULL, qty numeric, at date);",
    );
    // The files carry a sku the target does not have: the transform looks it up.
    let t = "INSERT INTO public.order_lines (product_id, qty, at)
             SELECT p.id, b.qty, b.at FROM $batch b JOIN public.products p USING (sku)";
    let opts = r#"{"trigger_interval": 100, "batch_columns": [
        {"name": "sku", "type": "text"}, {"name": "qty", "type": "numeric(10,2)"},
        {"name": "at", "type": "date"}]}"#;
    create_with(&mut c, "lines", &dir, "order_lines", opts, Some(t));
    // Stored as PostgreSQL spells the types (what the worker resolves, whatever its
    // search_path), modifier included.
    let stored = c
        .text(
            "SELECT options->>'batch_columns' FROM ingest_pipelines WHERE pipeline_name = 'lines'",
        )
        .unwrap_or_default();
    assert!(stored.contains("numeric(10,2)"), "{stored}");
    put(
        &dir,
        "1.csv",
        "sku,qty,at\na,1.234,2026-01-01\nb,xx,2026-01-02\nzz,1,2026-01-03\nb,2,not a date\nb,3,2026-01-04\n",
    );
    wait_done(&mut c, "lines", 1);
    // qty was rounded by the declared numeric(10,2); "zz" has no product (the transform's join
    // leaves it out); the bad values are rejects with their lines and columns.
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT product_id::text, qty::text, at::text FROM order_lines ORDER BY at"
        ),
        vec![
            vec![s("1"), s("1.23"), s("2026-01-01")],
            vec![s("2"), s("3.00"), s("2026-01-04")],
        ]
    );
    let r = rejects(&mut c, "lines");
    assert_eq!(
        r.iter().map(|x| (x.1, x.2.as_deref())).collect::<Vec<_>>(),
        vec![(3, Some("qty")), (5, Some("at"))],
        "{r:?}"
    );

    // What cannot work is refused when the pipeline is created, naming the column.
    for (opts, transform, says) in [
        (
            r#"{"batch_columns": [{"name": "sku", "type": "text"}]}"#,
            None,
            "without a transform",
        ),
        (
            r#"{"batch_columns": [{"name": "sku", "type": "no_such_type"}]}"#,
            Some(t),
            "column \"sku\": type \"no_such_type\" does not exist",
        ),
        (
            r#"{"batch_columns": [{"name": "sku", "type": "products"}]}"#,
            Some(t),
            "named with its schema, such as public.my_type",
        ),
        (
            r#"{"batch_columns": [{"name": "r", "type": "record"}]}"#,
            Some(t),
            "column \"r\": type \"record\" is a pseudo-type",
        ),
        (
            r#"{"batch_columns": [{"name": "r", "type": "anyelement"}]}"#,
            Some(t),
            "is a pseudo-type",
        ),
        (
            r#"{"batch_columns": [{"name": "q", "type": "int); DROP TABLE products; --"}]}"#,
            Some(t),
            "column \"q\"",
        ),
    ] {
        let sql = format!(
            "SELECT ingest_create_pipeline('bad', {}, 'order_lines', 'csv', {}::jsonb, {})",
            lit(&dir.display().to_string()),
            lit(opts),
            transform.map_or("NULL".to_string(), lit)
        );
        let e = c.client().batch_execute(&sql).unwrap_err();
        let shown = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(shown.contains(says), "{opts}: {shown}");
    }
    assert_eq!(c.int("SELECT count(*) FROM products"), 2);

    // A type its owner may not use is refused for a non-superuser.
    c.execute(
        "CREATE ROLE ann LOGIN; GRANT ecommerce_ingest_admin TO ann;
         GRANT INSERT ON order_lines TO ann;
         CREATE DOMAIN hidden_d AS int; REVOKE USAGE ON DOMAIN hidden_d FROM PUBLIC;",
    );
    let root = c.root_dir().display().to_string();
    c.reload(&[("ecommerce_ingest.allowed_roots", &root)]);
    let mut ann = c.connect_as("ann");
    let e = ann
        .batch_execute(&format!(
            "SELECT ingest_create_pipeline('ann', {}, 'order_lines', 'csv', {}::jsonb, {})",
            lit(&dir.display().to_string()),
            lit(r#"{"batch_columns": [{"name": "x", "type": "public.hidden_d"}]}"#),
            lit("INSERT INTO order_lines (product_id) SELECT x FROM $batch")
        ))
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("no USAGE privilege on type"),
        "{e:?}"
    );
}
