//! Pipelines: transforms in the chunk's transaction (upserts, fan-out), de-duplication by key,
//! error modes, row-level security and the role the rows go in as; exactly once through crashes.

use super::*;
use e2e::*;

#[test]
fn an_upsert_transform_applies_each_file_once_later_files_update_earlier_rows() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "stock");
    c.execute(
        "CREATE TABLE stock (sku text PRIMARY KEY, qty int NOT NULL, updates int NOT NULL DEFAULT 0);
         CREATE TABLE stock_log (sku text, qty int);",
    );
    // Fan-out: every row is also logged; an update counts how often a sku was updated, so a
    // file applied twice would show.
    // (A superuser's transform runs with search_path pg_catalog, pg_temp: tables are named
    // with their schema.)
    let t = "WITH logged AS (INSERT INTO public.stock_log SELECT sku, qty FROM $batch)
             INSERT INTO public.stock AS s (sku, qty) SELECT sku, qty FROM $batch
             ON CONFLICT (sku) DO UPDATE SET qty = EXCLUDED.qty, updates = s.updates + 1";
    create_with(
        &mut c,
        "stock",
        &dir,
        "stock",
        r#"{"trigger_interval": 100}"#,
        Some(t),
    );
    put(&dir, "a.csv", "sku,qty\nx,1\ny,2\nz,bad\n");
    wait_done(&mut c, "stock", 1);
    put(&dir, "b.csv", "sku,qty\nx,5\nw,3\n");
    wait_done(&mut c, "stock", 2);
    assert_eq!(
        rows_text(
            &mut c,
            "SELECT sku, qty::text, updates::text FROM stock ORDER BY sku"
        ),
        vec![
            vec![s("w"), s("3"), s("0")],
            vec![s("x"), s("5"), s("1")],
            vec![s("y"), s("2"), s("0")],
        ]
    );
    assert_eq!(c.int("SELECT count(*) FROM stock_log"), 4);
    // The bad value was rejected before the transform, with its column.
    let r = rejects(&mut c, "stock");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].1, r[0].2.as_deref()), (4, Some("qty")));
    assert_eq!(
        ledger(&mut c, "stock")
            .iter()
            .map(|f| (f.0.as_str(), f.1.as_str(), f.2, f.3))
            .collect::<Vec<_>>(),
        vec![("a.csv", "done", 2, 1), ("b.csv", "done", 2, 0)]
    );
    // The staging table is not left behind for anyone: no table of that name in the catalog.
    assert_eq!(
        c.int("SELECT count(*) FROM pg_class WHERE relname = 'ingest_batch'"),
        0
    );
}

#[test]
fn a_transform_that_raises_fails_its_file_alone_with_the_sqlstate_and_others_go_on() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "t");
    c.execute("CREATE TABLE t (k text PRIMARY KEY, v int)");
    // The same key twice in one batch: ON CONFLICT DO UPDATE cannot affect a row twice.
    let tr =
        "INSERT INTO public.t SELECT k, v FROM $batch ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";
    create_with(
        &mut c,
        "t",
        &dir,
        "t",
        r#"{"trigger_interval": 100}"#,
        Some(tr),
    );
    put(&dir, "1_ok.csv", "k,v\na,1\n");
    put(&dir, "2_bad.csv", "k,v\nb,1\nb,2\n");
    put(&dir, "3_ok.csv", "k,v\nc,3\n");
    wait_settled(&mut c, "t", 3);
    let l = ledger(&mut c, "t");
    assert_eq!(l[0].1, "done");
    assert_eq!(l[2].1, "done");
    assert_eq!((l[1].1.as_str(), l[1].2, l[1].3), ("failed", 0, 0), "{l:?}");
    let err = l[1].5.clone().unwrap_or_default();
    assert!(
        err.contains("transform failed") && err.contains("21000"),
        "{err}"
    );
    assert_eq!(c.int("SELECT count(*) FROM t"), 2);
    assert_eq!(c.int("SELECT count(*) FROM t WHERE k = 'b'"), 0);
    // Fixed, it is retried by name and lands.
    // (Paused while the file is fixed: the worker would otherwise take the new version by
    // itself, and the retry would find nothing failed.)
    c.execute("ALTER TABLE t ADD COLUMN n int");
    c.execute("SELECT ingest_pause('t')");
    full_trigger(&mut c, "t");
    write_atomic(&dir, "2_bad.csv", b"k,v\nb,2\n");
    c.execute("SELECT ingest_retry('2_bad.csv', 't')");
    c.execute("SELECT ingest_resume('t')");
    wait_done(&mut c, "t", 3);
    assert_eq!(c.int("SELECT v::int8 FROM t WHERE k = 'b'"), 2);
}

#[test]
fn dedup_key_skips_rows_already_there_and_counts_them() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "ev");
    c.execute(
        "CREATE TABLE ev (id bigint, src text, at timestamptz DEFAULT now(),
                          CONSTRAINT ev_key UNIQUE (id, src))",
    );
    // A key that is no unique index is refused at creation.
    let sql = format!(
        "SELECT ingest_create_pipeline('bad', {}, 'ev', 'csv', '{{\"dedup_key\": [\"id\"]}}')",
        lit(&dir.display().to_string())
    );
    let err = expect_db_error(
        c.client().batch_execute(&sql),
        "a dedup_key that is no unique index",
    );
    assert!(err.contains("unique index"), "{err}");
    create_with(
        &mut c,
        "ev",
        &dir,
        "ev",
        r#"{"trigger_interval": 100, "dedup_key": ["id", "src"]}"#,
        None,
    );
    put(&dir, "a.csv", "id,src\n1,x\n2,x\n2,x\n3,x\n");
    wait_done(&mut c, "ev", 1);
    put(&dir, "b.csv", "id,src\n3,x\n4,x\n1,y\n");
    wait_done(&mut c, "ev", 2);
    assert_eq!(c.int("SELECT count(*) FROM ev"), 5);
    assert_eq!(
        ledger(&mut c, "ev")
            .iter()
            .map(|f| (f.2, f.4))
            .collect::<Vec<_>>(),
        vec![(3, 1), (2, 1)],
        "(rows_ok, rows_duplicate) per file"
    );
}

#[test]
fn error_modes_fail_a_file_as_a_whole_and_nothing_is_silently_dropped() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("CREATE TABLE m1 (id int PRIMARY KEY); CREATE TABLE m2 (id int PRIMARY KEY)");
    let d1 = folder(&c, "m1");
    let d2 = folder(&c, "m2");
    create_with(
        &mut c,
        "failfast",
        &d1,
        "m1",
        r#"{"trigger_interval": 100, "on_error": "fail_file", "min_file_age": 0}"#,
        None,
    );
    create_with(
        &mut c,
        "skipfile",
        &d2,
        "m2",
        r#"{"trigger_interval": 100, "on_error": "skip_file", "max_rejects": 1, "max_reject_ratio": 0.2, "min_file_age": 0}"#,
        None,
    );
    put(&d1, "good.csv", "id\n1\n2\n");
    put(&d1, "one_bad.csv", "id\n10\nx\n11\n");
    // 1 reject of 10: within both limits. 2 rejects: above max_rejects. 1 of 3: above 20 %.
    let mut within = String::from("id\n");
    for i in 0..9 {
        within += &format!("{}\n", 100 + i);
    }
    within += "bad\n";
    put(&d2, "within.csv", &within);
    put(&d2, "two_bad.csv", "id\n200\nbad\nbad\n201\n");
    put(&d2, "ratio.csv", "id\n300\n301\nbad\n");
    wait_settled(&mut c, "failfast", 2);
    wait_settled(&mut c, "skipfile", 3);
    let f = ledger(&mut c, "failfast");
    assert_eq!(
        (f[0].0.as_str(), f[0].1.as_str(), f[0].2),
        ("good.csv", "done", 2)
    );
    assert_eq!(
        (f[1].0.as_str(), f[1].1.as_str(), f[1].2, f[1].3),
        ("one_bad.csv", "failed", 0, 0)
    );
    assert!(
        f[1].5.as_deref().unwrap_or("").contains("fail_file"),
        "{:?}",
        f[1].5
    );
    assert_eq!(c.int("SELECT count(*) FROM m1"), 2);
    let s2 = ledger(&mut c, "skipfile");
    let by: std::collections::HashMap<_, _> = s2
        .iter()
        .map(|f| (f.0.as_str(), (f.1.as_str(), f.2, f.3)))
        .collect();
    assert_eq!(by["within.csv"], ("done", 9, 1));
    assert_eq!(by["two_bad.csv"], ("failed", 0, 0));
    assert_eq!(by["ratio.csv"], ("failed", 0, 0));
    assert_eq!(c.int("SELECT count(*) FROM m2"), 9);
    // A failed file is retried after a fix: ingest_retry, or a new version of the file.
    // (Paused while the file is fixed, as above.)
    c.execute("SELECT ingest_pause('failfast')");
    full_trigger(&mut c, "failfast");
    write_atomic(&d1, "one_bad.csv", b"id\n10\n11\n");
    c.execute("SELECT ingest_retry('one_bad.csv', 'failfast')");
    c.execute("SELECT ingest_resume('failfast')");
    wait_done(&mut c, "failfast", 2);
    assert_eq!(c.int("SELECT count(*) FROM m1"), 4);
}

#[test]
fn a_transform_runs_as_the_owner_and_cannot_escalate() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "own");
    c.execute(
        "CREATE ROLE tom LOGIN; GRANT ecommerce_ingest_admin TO tom;
         CREATE TABLE owned (id int, who text);
         GRANT INSERT, SELECT ON owned TO tom;
         CREATE TABLE secret (x int); INSERT INTO secret VALUES (42);",
    );
    let root = c.root_dir().display().to_string();
    c.reload(&[("ecommerce_ingest.allowed_roots", &root)]);
    let mut tom = c.connect_as("tom");
    let attempts = [
        // No privilege on secret.
        (
            "reads",
            "INSERT INTO owned SELECT b.id, s.x::text FROM $batch b, secret s",
        ),
        // SET ROLE inside the transform.
        (
            "setrole",
            "SET ROLE postgres; INSERT INTO owned SELECT id, current_user FROM $batch",
        ),
        // A server file.
        (
            "readfile",
            "INSERT INTO owned SELECT b.id, pg_read_file('/etc/passwd') FROM $batch b",
        ),
    ];
    for (name, t) in attempts {
        let d = folder(&c, name);
        tom.batch_execute(&format!(
            "SELECT ingest_create_pipeline({}, {}, 'owned', 'csv', '{{\"trigger_interval\": 100}}', {})",
            lit(name),
            lit(&d.display().to_string()),
            lit(t)
        ))
        .unwrap_or_else(|e| panic!("{name}: {}", db_error_text(&e)));
        put(&d, "f.csv", "id\n1\n");
    }
    // And a transform that behaves, to see as whom it runs.
    tom.batch_execute(&format!(
        "SELECT ingest_create_pipeline('fine', {}, 'owned', 'csv', '{{\"trigger_interval\": 100}}',
                 'INSERT INTO owned SELECT id, current_user FROM $batch')",
        lit(&dir.display().to_string())
    ))
    .unwrap();
    put(&dir, "f.csv", "id\n7\n");
    for (name, _) in attempts {
        wait_settled(&mut c, name, 1);
        let l = ledger(&mut c, name);
        assert_eq!(l[0].1, "failed", "{name}: {l:?}");
        let err = l[0].5.clone().unwrap_or_default();
        assert!(err.contains("transform failed"), "{name}: {err}");
    }
    wait_done(&mut c, "fine", 1);
    assert_eq!(
        rows_text(&mut c, "SELECT id::text, who FROM owned ORDER BY id"),
        vec![vec![s("7"), s("tom")]]
    );
}

#[test]
fn rows_go_in_as_the_target_owner_for_a_superusers_pipeline_and_row_level_security_applies() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute(
        "CREATE ROLE bob; CREATE TABLE bobs (id int, who text);
         ALTER TABLE bobs OWNER TO bob;
         CREATE FUNCTION bobs_who() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN NEW.who := current_user; RETURN NEW; END $$;
         CREATE TRIGGER bobs_who BEFORE INSERT ON bobs FOR EACH ROW EXECUTE FUNCTION bobs_who();
         CREATE ROLE rita LOGIN; GRANT ecommerce_ingest_admin TO rita;
         CREATE TABLE tenants (id int, tenant text);
         GRANT INSERT, SELECT ON tenants TO rita;
         ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
         CREATE POLICY only_a ON tenants FOR ALL TO rita USING (tenant = 'a') WITH CHECK (tenant = 'a');",
    );
    let d = folder(&c, "bobs");
    create_with(
        &mut c,
        "bobs",
        &d,
        "bobs",
        r#"{"trigger_interval": 100}"#,
        None,
    );
    put(&d, "f.csv", "id\n1\n");
    wait_done(&mut c, "bobs", 1);
    assert_eq!(
        rows_text(&mut c, "SELECT who FROM bobs"),
        vec![vec![s("bob")]],
        "a superuser's pipeline inserts as the table's owner, as the events pipeline does"
    );
    // rita's pipeline into tenants: row-level security applies to her (INSERT, not COPY).
    let root = c.root_dir().display().to_string();
    c.reload(&[("ecommerce_ingest.allowed_roots", &root)]);
    let dt = folder(&c, "tenants");
    let mut rita = c.connect_as("rita");
    rita.batch_execute(&format!(
        "SELECT ingest_create_pipeline('tenants', {}, 'tenants', 'csv', '{{\"trigger_interval\": 100}}')",
        lit(&dt.display().to_string())
    ))
    .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    put(&dt, "ok.csv", "id,tenant\n1,a\n2,a\n");
    put(&dt, "other.csv", "id,tenant\n3,b\n4,a\n");
    wait_settled(&mut c, "tenants", 2);
    let l = ledger(&mut c, "tenants");
    // The row the policy refuses is a reject of its own; the file's other row lands.
    assert_eq!(
        l.iter()
            .map(|f| (f.0.as_str(), f.1.as_str(), f.2, f.3))
            .collect::<Vec<_>>(),
        vec![("ok.csv", "done", 2, 0), ("other.csv", "done", 1, 1)]
    );
    let r = rejects(&mut c, "tenants");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].1, 2);
    assert!(
        r[0].3.contains("row-level security") && r[0].3.contains("42501"),
        "{r:?}"
    );
    assert_eq!(
        rows_text(&mut c, "SELECT id::text FROM tenants ORDER BY tenants.id"),
        vec![vec![s("1")], vec![s("2")], vec![s("4")]]
    );
}

#[test]
fn kills_during_transformed_ingestion_apply_every_file_exactly_once() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "cnt");
    c.execute(
        "CREATE TABLE hits (id bigint);
         CREATE TABLE counter (n bigint NOT NULL); INSERT INTO counter VALUES (0);",
    );
    // Every row bumps the counter: a chunk applied twice would show as counter > rows.
    // It also sleeps 0.1 s once per chunk: time for kills in the middle, however fast the build.
    let t = "WITH s AS (SELECT pg_catalog.pg_sleep(0.1)),
                  ins AS (INSERT INTO public.hits SELECT id FROM $batch, s RETURNING 1)
             UPDATE public.counter SET n = n + (SELECT count(*) FROM ins)";
    create_with(
        &mut c,
        "cnt",
        &dir,
        "hits",
        r#"{"trigger_interval": 100, "chunk_size": 64, "batch_rows": 500}"#,
        Some(t),
    );
    let files = 6;
    let per = 40_000;
    let mut id = 0i64;
    for f in 0..files {
        let mut text = String::from("id\n");
        for _ in 0..per {
            id += 1;
            text += &format!("{id}\n");
        }
        put(&dir, &format!("f{f}.csv"), &text);
    }
    let total = id;
    let started = Instant::now();
    let mut kills = 0;
    while done(&mut c, "cnt") < files && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(150 + (kills * 97) % 400));
        if done(&mut c, "cnt") >= files {
            break;
        }
        if kills % 2 == 0 {
            if let Some(pid) = pstatus(&mut c, "cnt").worker_pid {
                c.crash_process(pid);
            }
        } else {
            c.restart("immediate");
        }
        kills += 1;
    }
    println!("{kills} kills");
    assert!(
        kills >= 2,
        "the files were done before two kills: make them bigger"
    );
    wait_done(&mut c, "cnt", files);
    assert_eq!(c.int("SELECT count(*) FROM hits"), total);
    assert_eq!(c.int("SELECT count(DISTINCT id) FROM hits"), total);
    assert_eq!(c.int("SELECT n FROM counter"), total);
}

#[test]
fn how_files_are_read_cannot_change_while_a_file_is_half_ingested() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = folder(&c, "half");
    c.execute("CREATE TABLE half (a int, b int)");
    // A transform that sleeps once per chunk: the file stays half ingested long enough.
    create_with(
        &mut c,
        "half",
        &dir,
        "half",
        r#"{"trigger_interval": 100, "chunk_size": 64, "batch_rows": 100, "min_file_age": 0}"#,
        Some("WITH s AS (SELECT pg_catalog.pg_sleep(0.3)) INSERT INTO public.half SELECT b.a, b.b FROM $batch b, s"),
    );
    let mut text = String::from("b,a\n");
    for i in 0..60_000 {
        text += &format!("{i},{}\n", i + 1);
    }
    put(&dir, "big.csv", &text);
    // Paused after its first chunks: the file stays half ingested.
    c.wait_for("big.csv half ingested", T, |c| {
        c.int(
            "SELECT count(*) FROM ingest_files
              WHERE pipeline = 'half' AND status IN ('ingesting', 'growing')",
        ) == 1
    });
    c.execute("SELECT ingest_pause('half')");
    std::thread::sleep(Duration::from_millis(500));
    let err = expect_db_error(
        c.client().batch_execute(
            "SELECT ingest_alter_pipeline('half', options => '{\"header\": false}')",
        ),
        "a header change while big.csv is half ingested",
    );
    assert!(err.contains("half-ingested"), "{err}");
    // What does not change how a file is read may change.
    c.execute("SELECT ingest_alter_pipeline('half', options => '{\"batch_rows\": 500}')");
    c.execute("SELECT ingest_resume('half')");
    wait_done(&mut c, "half", 1);
    assert_eq!(c.int("SELECT count(*) FROM half"), 60_000);
    assert_eq!(c.int("SELECT count(*) FROM half WHERE a <> b + 1"), 0);
}
