//! Paths to superuser that were open in 0.1.0, and the folders the worker must never touch:
//! a database owner's objects in `public`, a hostile `ALTER DATABASE … SET`, triggers on the
//! table, and input/archive/failed folders pointing at the server's own files.

use e2e::*;
use postgres::Client;
use std::fs;
use std::time::Duration;

/// The traps of a hostile database owner: a log table and a function that logs who ran it and,
/// when that is a superuser, makes `appowner` one.
const TRAPS: &str = "CREATE TABLE public.trap_log (who text, what text);
     GRANT INSERT ON public.trap_log TO PUBLIC;
     CREATE FUNCTION public.trap(what text) RETURNS void LANGUAGE plpgsql AS $$
     BEGIN
         INSERT INTO public.trap_log VALUES (current_user, what);
         IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
             EXECUTE 'ALTER ROLE appowner SUPERUSER';
         END IF;
     END $$;";

/// Makes `appowner` a non-superuser owner of database `postgres` as docs/security.md says it
/// may be: schema public stays a superuser's, and appowner may create objects in it. With a
/// log table its traps write to. Returns a connection as `appowner`.
fn database_owner(c: &mut Cluster) -> Client {
    c.execute(
        "CREATE ROLE appowner LOGIN;
         ALTER SCHEMA public OWNER TO postgres;
         GRANT CREATE ON SCHEMA public TO appowner;
         ALTER DATABASE postgres OWNER TO appowner;
         CREATE ROLE mon LOGIN; GRANT ecommerce_ingest_monitor TO mon;
         CREATE ROLE adm LOGIN; GRANT ecommerce_ingest_admin TO adm;",
    );
    let mut owner = c.connect_as("appowner");
    owner
        .batch_execute(TRAPS)
        .expect("appowner sets up its traps");
    owner
}

fn is_superuser(c: &mut Cluster, role: &str) -> bool {
    c.int(&format!(
        "SELECT rolsuper::int::int8 FROM pg_roles WHERE rolname = {}",
        lit(role)
    )) == 1
}

fn trap_log(c: &mut Cluster) -> Vec<(String, String)> {
    c.client()
        .query("SELECT who, what FROM public.trap_log ORDER BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn objects_a_database_owner_puts_in_public_are_never_run_by_the_extensions_functions() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.write_file_atomic("a.csv", &gen_file(1, 10));
    c.wait_files_done(1, Duration::from_secs(30));
    let mut owner = database_owner(&mut c);
    // An aggregate that shadows sum(bigint), an operator that shadows text = text, and
    // functions that shadow what the functions call, all in public.
    owner
        .batch_execute(
            "CREATE FUNCTION public.trap_sfunc(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('sum'); RETURN coalesce($1, 0) + coalesce($2, 0); END $$;
             CREATE AGGREGATE public.sum(bigint) (sfunc = public.trap_sfunc, stype = bigint);
             CREATE FUNCTION public.trap_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
             CREATE OPERATOR public.= (leftarg = text, rightarg = text, function = public.trap_eq);
             CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('now'); RETURN pg_catalog.now(); END $$;
             CREATE FUNCTION public.current_database() RETURNS name LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('current_database'); RETURN pg_catalog.current_database(); END $$;
",
        )
        .expect("appowner creates objects in public");
    // The monitor role calls the status function (as the exporter does), the admin role the
    // control functions; the owner itself too.
    let mut mon = c.connect_as("mon");
    let mut adm = c.connect_as("adm");
    for _ in 0..2 {
        mon.query("SELECT * FROM ingest_status()", &[]).unwrap();
        owner.query("SELECT * FROM ingest_files", &[]).ok();
        adm.query("SELECT ingest_pause()", &[]).unwrap();
        adm.query("SELECT ingest_resume()", &[]).unwrap();
        adm.query("SELECT ingest_trigger()", &[]).unwrap();
        let _ = adm.query("SELECT ingest_retry('a.csv')", &[]);
        let _ = adm.query("SELECT ingest_retry('no-such-file')", &[]);
    }
    // A superuser manages a pipeline with public on its search_path, even before pg_catalog:
    // none of the pipeline functions' statements reaches the traps (the target is resolved as
    // the caller asked, before the call).
    let dir = c.root_dir().join("esc");
    postgres_folder(&dir);
    c.execute(&format!(
        "CREATE TABLE public.esc_t (id int);
         SET search_path = public, pg_catalog;
         SELECT ingest_create_pipeline('esc', {}, 'esc_t', 'csv', '{{\"trigger_interval\": 100}}');
         SELECT ingest_alter_pipeline('esc', options => '{{\"batch_rows\": 10}}');
         SELECT ingest_pause('esc'); SELECT ingest_resume('esc'); SELECT ingest_trigger('esc');
         SELECT * FROM ingest_status();
         SELECT ingest_drop_pipeline('esc');
         RESET search_path;",
        lit(&dir.display().to_string())
    ));
    // The superuser's own DROP EXTENSION path (refused, user_events has rows) runs SQL too.
    let _ = c.client().batch_execute("DROP EXTENSION ecommerce_ingest");
    let s = c.status();
    assert_eq!(s.files_ingested, 1);
    assert_eq!(s.rows_ingested, 10);
    assert!(
        !is_superuser(&mut c, "appowner"),
        "appowner became a superuser; traps ran as: {:?}",
        trap_log(&mut c)
    );
    let ran: Vec<_> = trap_log(&mut c)
        .into_iter()
        .filter(|(who, _)| who != "appowner")
        .collect();
    assert!(ran.is_empty(), "traps ran as other roles: {ran:?}");
    // Every function of the extension pins its search_path to pg_catalog, pg_temp (also the
    // three that manage pipelines, which run as their caller: their target is a regclass
    // argument, resolved by the caller's search_path before the call).
    let loose: Vec<String> = c
        .client()
        .query(
            "SELECT p.oid::regprocedure::text || ' ' || coalesce(p.proconfig::text, 'no SET')
                    || CASE WHEN p.prosecdef THEN ' SECURITY DEFINER' ELSE '' END
               FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'ecommerce_ingest'
              WHERE p.proconfig IS NULL OR NOT ('search_path=pg_catalog, pg_temp' = ANY (p.proconfig))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        loose.is_empty(),
        "functions without a pinned search_path: {loose:?}"
    );
}

#[test]
fn a_hostile_database_setting_never_reaches_the_worker() {
    let mut c = Cluster::start(ClusterOptions::default());
    let mut owner = database_owner(&mut c);
    owner
        .batch_execute(
            "CREATE SCHEMA evil;
             CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
             CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('now'); RETURN pg_catalog.now(); END $$;
             CREATE FUNCTION evil.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('unnest'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
             CREATE FUNCTION evil.trap_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
             CREATE OPERATOR evil.= (leftarg = text, rightarg = text, function = evil.trap_eq);
             GRANT USAGE ON SCHEMA evil TO PUBLIC;
             ALTER DATABASE postgres SET search_path = evil, pg_catalog, public;
             ALTER DATABASE postgres SET default_transaction_read_only = on;
             ALTER DATABASE postgres SET statement_timeout = '1ms';
             ALTER DATABASE postgres SET lock_timeout = '1ms';
             ALTER DATABASE postgres SET default_transaction_isolation = 'serializable';
             ALTER DATABASE postgres SET exit_on_error = on;
             ALTER DATABASE postgres SET session_authorization = 'appowner';",
        )
        .expect("appowner sets hostile database settings");
    // Database settings apply when a session starts: start a new worker.
    let pid = c.wait_worker();
    c.execute(&format!("SELECT pg_terminate_backend({pid})"));
    c.wait_for("a new worker", Duration::from_secs(30), |c| {
        c.worker_pid().is_some_and(|p| p != pid)
    });
    let bytes = gen_file(2, 500);
    let exp = expected_of("b.csv", &bytes);
    c.write_file_atomic("b.csv", &bytes);
    c.wait_files_done(1, Duration::from_secs(30));
    c.assert_exact_rows(&exp.rows);
    assert!(
        !is_superuser(&mut c, "appowner"),
        "appowner became a superuser; traps ran as: {:?}",
        trap_log(&mut c)
    );
    assert_eq!(
        trap_log(&mut c),
        vec![],
        "the worker ran the owner's functions"
    );
    assert_eq!(c.status().state, "running");
    // It ran as itself, not as appowner (session_authorization: appowner may not write the
    // ledger, so the file above would not be done). An error does not end it (exit_on_error):
    // a lock held past lock_timeout makes chunks fail and retry.
    let worker = c.wait_worker();
    let mut locker = c.connect_to("postgres");
    // (a connection made now gets the database's settings: back to postgres, no timeouts)
    locker
        .batch_execute(
            "RESET SESSION AUTHORIZATION; SET statement_timeout = 0; SET lock_timeout = 0;
             SET default_transaction_read_only = off; SET exit_on_error = off;
             BEGIN; LOCK TABLE user_events IN ACCESS EXCLUSIVE MODE;",
        )
        .unwrap();
    c.write_file_atomic("late.csv", &gen_file(6, 10));
    std::thread::sleep(Duration::from_millis(2500));
    locker.batch_execute("COMMIT").unwrap();
    c.wait_files_done(2, Duration::from_secs(30));
    assert_eq!(
        c.worker_pid(),
        Some(worker),
        "the worker exited on an error"
    );
}

#[test]
fn triggers_on_the_table_run_as_its_owner_not_as_the_worker() {
    let mut c = Cluster::start(ClusterOptions::default());
    let mut owner = database_owner(&mut c);
    // The superuser hands the table to appowner (as a DBA might, to let it manage the table).
    c.execute("ALTER TABLE user_events OWNER TO appowner");
    owner
        .batch_execute(
            "CREATE FUNCTION public.on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('trigger'); RETURN NEW; END $$;
             CREATE TRIGGER on_insert BEFORE INSERT ON public.user_events
                FOR EACH ROW EXECUTE FUNCTION public.on_insert();",
        )
        .expect("appowner adds a trigger to its table");
    let bytes = gen_file(3, 5);
    let exp = expected_of("c.csv", &bytes);
    c.write_file_atomic("c.csv", &bytes);
    c.wait_files_done(1, Duration::from_secs(30));
    c.assert_exact_rows(&exp.rows);
    assert!(!is_superuser(&mut c, "appowner"));
    let log = trap_log(&mut c);
    assert_eq!(log.len(), 5, "{log:?}");
    assert!(
        log.iter().all(|(who, _)| who == "appowner"),
        "the trigger ran as {log:?}"
    );
}

/// Names and contents of the entries of a folder (not recursive), to compare before and after.
fn snapshot(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            let md = fs::symlink_metadata(e.path()).unwrap();
            let len = if md.is_file() { md.len() } else { 0 };
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "server.log"
                    | "postmaster.pid"
                    | "postgresql.auto.conf"
                    | "ecommerce_ingest.marker"
            ) && !n.starts_with("pg_")
        })
        .collect();
    out.sort();
    out
}

fn wait_error_naming(c: &mut Cluster, words: &[&str]) -> String {
    let mut detail = String::new();
    c.wait_for(
        &format!("state error naming {words:?}"),
        Duration::from_secs(20),
        |c| {
            let s = c.status();
            detail = s.detail.clone();
            s.state == "error" && words.iter().all(|w| s.detail.contains(w))
        },
    );
    println!("{detail}");
    detail
}

#[test]
fn folders_of_the_server_are_refused_and_never_touched() {
    let mut c = Cluster::start(ClusterOptions::default());
    let data = c.data_dir().to_path_buf();
    let before = snapshot(&data);
    let ts = c.root_dir().join("ts");
    fs::create_dir_all(&ts).unwrap();
    let status = std::process::Command::new("chown")
        .arg("postgres")
        .arg(&ts)
        .status()
        .unwrap();
    assert!(status.success());
    c.execute(&format!(
        "CREATE TABLESPACE fast LOCATION {}",
        lit(&ts.to_string_lossy())
    ));
    // The most dangerous setting: everything, archived, from the data directory.
    c.reload(&[
        ("ecommerce_ingest.file_pattern", "*"),
        ("ecommerce_ingest.processed_action", "archive"),
        ("ecommerce_ingest.input_dir", ""),
    ]);
    wait_error_naming(&mut c, &["ecommerce_ingest.input_dir is not set"]);
    let data_s = data.to_string_lossy().into_owned();
    c.reload(&[("ecommerce_ingest.input_dir", &data_s)]);
    wait_error_naming(&mut c, &["is the data directory"]);
    c.reload(&[("ecommerce_ingest.input_dir", "ingest_input")]);
    wait_error_naming(&mut c, &["is inside the data directory"]);
    let link = c.root_dir().join("innocent");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    c.reload(&[("ecommerce_ingest.input_dir", &link.to_string_lossy())]);
    wait_error_naming(&mut c, &["is the data directory"]);
    c.reload(&[("ecommerce_ingest.input_dir", "/")]);
    wait_error_naming(&mut c, &["contains the data directory"]);
    // A proper input folder, but archive or failed folders in the server's folders, or the
    // input folder itself (also through a symbolic link).
    let input = c.input_dir().to_string_lossy().into_owned();
    c.reload(&[
        ("ecommerce_ingest.input_dir", &input),
        (
            "ecommerce_ingest.archive_dir",
            &ts.join("old").to_string_lossy(),
        ),
    ]);
    wait_error_naming(&mut c, &["archive_dir", "tablespace fast"]);
    c.reload(&[(
        "ecommerce_ingest.archive_dir",
        &data.join("pg_wal").to_string_lossy(),
    )]);
    // ("pg_wal": the error before this one named archive_dir too.)
    wait_error_naming(&mut c, &["archive_dir", "pg_wal"]);
    c.reload(&[("ecommerce_ingest.archive_dir", &input)]);
    wait_error_naming(&mut c, &["archive_dir", "input folder itself"]);
    let in_link = c.root_dir().join("in-again");
    std::os::unix::fs::symlink(c.input_dir(), &in_link).unwrap();
    c.reload(&[
        ("ecommerce_ingest.archive_dir", ""),
        ("ecommerce_ingest.failed_dir", &in_link.to_string_lossy()),
    ]);
    wait_error_naming(&mut c, &["failed_dir", "input folder itself"]);
    // Meanwhile a file waits in the input folder: nothing is read while refused.
    c.write_file_atomic("waiting.csv", &gen_file(4, 3));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(c.event_count(), 0);
    assert_eq!(snapshot(&data), before, "the data directory changed");
    assert!(!data.join("archive").exists() && !data.join("failed").exists());
    assert_eq!(c.int("SELECT count(*) FROM ingest_files"), 0);
    // Fixed: ingestion starts, and the file is archived where it should be.
    c.reload(&[("ecommerce_ingest.failed_dir", "")]);
    c.wait_files_done(1, Duration::from_secs(30));
    assert_eq!(c.event_count(), 3);
    c.wait_for("waiting.csv archived", Duration::from_secs(10), |c| {
        c.input_dir().join("archive/waiting.csv").exists()
    });
    assert_eq!(c.status().state, "running");
    assert!(!is_err_in_log(&c), "{}", c.log_tail(40));
}

fn is_err_in_log(c: &Cluster) -> bool {
    c.server_log()
        .contains("data directory lock file is invalid")
}

#[test]
fn an_archive_folder_that_is_the_input_folder_never_loops() {
    // Set at start (not by reload): the worker must refuse it from its first trigger.
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.file_pattern = '*'",
        "ecommerce_ingest.processed_action = 'archive'",
    ]));
    let input = c.input_dir().to_string_lossy().into_owned();
    c.reload(&[("ecommerce_ingest.archive_dir", &input)]);
    wait_error_naming(&mut c, &["archive_dir", "input folder itself"]);
    c.write_file_atomic("loop.csv", &gen_file(5, 1));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.event_count(), 0);
    assert_eq!(data_files(c.input_dir()), vec!["loop.csv".to_string()]);
    // Pointing it elsewhere: one row, once, and one archived file.
    let elsewhere = c.root_dir().join("archive");
    c.reload(&[("ecommerce_ingest.archive_dir", &elsewhere.to_string_lossy())]);
    c.wait_files_done(1, Duration::from_secs(30));
    c.wait_for("loop.csv archived", Duration::from_secs(10), |_| {
        elsewhere.join("loop.csv").exists()
    });
    c.settle();
    assert_eq!(c.event_count(), 1);
    assert_eq!(c.int("SELECT count(*) FROM ingest_files"), 1);
    assert_eq!(data_files(&elsewhere), vec!["loop.csv".to_string()]);
}

#[test]
fn a_schema_public_a_non_superuser_owns_is_refused_and_renaming_it_runs_nothing() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.write_file_atomic("a.csv", &gen_file(20, 5));
    c.wait_files_done(1, Duration::from_secs(30));
    // PostgreSQL 15's default: public belongs to pg_database_owner, here a non-superuser.
    c.execute(
        "CREATE ROLE appowner LOGIN; ALTER DATABASE postgres OWNER TO appowner;
         CREATE ROLE mon LOGIN; GRANT ecommerce_ingest_monitor TO mon;
         CREATE ROLE adm LOGIN; GRANT ecommerce_ingest_admin TO adm;",
    );
    c.wait_for(
        "state error naming the schema",
        Duration::from_secs(20),
        |c| {
            let s = c.status();
            s.state == "error" && s.detail.contains("ALTER SCHEMA public OWNER TO")
        },
    );
    let mut mon = c.connect_as("mon");
    let state: String = mon
        .query_one("SELECT state FROM ingest_status()", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, "error");
    let mut adm = c.connect_as("adm");
    let err = expect_db_error(adm.query("SELECT ingest_pause()", &[]), "pause");
    assert!(err.contains("not a superuser"), "{err}");
    // The owner renames public and puts look-alike views in a new one.
    let mut owner = c.connect_as("appowner");
    owner
        .batch_execute(&format!(
            "ALTER SCHEMA public RENAME TO public_old;
             CREATE SCHEMA public;
             {}
             CREATE FUNCTION public.trap_bool() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('view'); RETURN false; END $$;
             CREATE FUNCTION public.trap_int() RETURNS bigint LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('view'); RETURN 0; END $$;
             CREATE VIEW public.ingest_control AS SELECT public.trap_bool() AS paused, NULL::text AS reason;
             CREATE VIEW public.ingest_ledger AS SELECT 'x'::text AS file_name, 'done'::text AS status,
                    public.trap_int() AS rows_ok, 0::bigint AS rows_rejected;
             CREATE VIEW public.user_events AS SELECT public.trap_int() AS n;",
            TRAPS
        ))
        .expect("appowner replaces public");
    c.write_file_atomic("b.csv", &gen_file(21, 5));
    // (public is the owner's now: the extension's functions are reached through public_old)
    c.wait_for(
        "state error naming the rename",
        Duration::from_secs(20),
        |c| {
            c.text("SELECT detail FROM public_old.ingest_status()")
                .is_some_and(|d| d.contains("renamed"))
        },
    );
    let _ = mon.query("SELECT * FROM public_old.ingest_status()", &[]);
    let _ = adm.query("SELECT public_old.ingest_resume()", &[]);
    let _ = c.client().batch_execute("DROP EXTENSION ecommerce_ingest");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !is_superuser(&mut c, "appowner"),
        "appowner became a superuser"
    );
    let ran = c.int("SELECT count(*) FROM public.trap_log");
    assert_eq!(ran, 0, "superuser code read the look-alike views");
    // A superuser puts things right: ingestion goes on, b.csv included, once.
    c.execute(
        "DROP SCHEMA public CASCADE; ALTER SCHEMA public_old RENAME TO public;
         ALTER SCHEMA public OWNER TO postgres;",
    );
    c.wait_files_done(2, Duration::from_secs(30));
    assert_eq!(c.event_count(), 10);
    assert_eq!(c.status().state, "running");
    // And a new installation in a database whose public a non-superuser owns is refused.
    c.execute("CREATE DATABASE other OWNER appowner");
    let mut other = c.connect_to("other");
    let err = expect_db_error(
        other.batch_execute("CREATE EXTENSION ecommerce_ingest"),
        "CREATE EXTENSION in a database a non-superuser owns",
    );
    assert!(err.contains("not a superuser"), "{err}");
}

#[test]
fn drop_extension_runs_no_code_of_others_even_where_the_extension_is_missing() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute("CREATE ROLE appowner LOGIN");
    c.execute("CREATE DATABASE evildb OWNER appowner");
    let mut owner = c
        .try_connect_to("evildb", "appowner")
        .expect("connect to evildb");
    owner
        .batch_execute(&format!(
            "{TRAPS}
             CREATE FUNCTION public.imm() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
             BEGIN PERFORM public.trap('immutable'); RETURN true; END $$;
             CREATE VIEW public.user_events AS SELECT 1 AS x WHERE public.imm();"
        ))
        .expect("appowner's traps in evildb");
    let mut sup = c.connect_to("evildb");
    sup.batch_execute("DROP EXTENSION IF EXISTS ecommerce_ingest")
        .unwrap();
    let _ = sup.batch_execute("DROP EXTENSION ecommerce_ingest");
    assert!(
        !is_superuser(&mut c, "appowner"),
        "appowner became a superuser"
    );
    let ran: i64 = sup
        .query_one(
            "SELECT count(*) FROM public.trap_log WHERE who <> 'appowner'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ran, 0);
}

#[test]
fn a_table_owner_who_turns_user_events_into_a_view_gains_nothing_from_drop_extension() {
    let mut c = Cluster::start(ClusterOptions::default());
    let mut owner = database_owner(&mut c);
    c.execute("ALTER TABLE user_events OWNER TO appowner");
    owner
        .batch_execute(
            "CREATE FUNCTION public.trap_true() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.trap('rule'); RETURN true; END $$;
             TRUNCATE public.user_events;
             ALTER TABLE public.user_events DROP CONSTRAINT user_events_pkey;",
        )
        .expect("appowner empties its table");
    // (VACUUM clears relhasindex: a table with indexes cannot become a view)
    owner.batch_execute("VACUUM public.user_events").unwrap();
    owner
        .batch_execute(
            "CREATE RULE \"_RETURN\" AS ON SELECT TO public.user_events DO INSTEAD
                SELECT NULL::bigint AS event_id, NULL::varchar(50) AS user_id,
                       NULL::varchar(20) AS event_type, NULL::varchar(50) AS product_id,
                       NULL::varchar(200) AS product_name, NULL::varchar(100) AS product_category,
                       NULL::numeric(10,2) AS price, NULL::timestamptz AS event_timestamp,
                       NULL::varchar(100) AS session_id, NULL::varchar(50) AS device_type,
                       NULL::timestamptz AS inserted_at, NULL::integer AS source_file_id,
                       NULL::bigint AS source_line
                 WHERE public.trap_true();",
        )
        .expect("appowner turns its table into a view");
    let err = expect_db_error(
        c.client().batch_execute("DROP EXTENSION ecommerce_ingest"),
        "DROP EXTENSION over a view",
    );
    println!("{err}");
    assert!(err.contains("no longer a table"), "{err}");
    assert!(
        !is_superuser(&mut c, "appowner"),
        "appowner became a superuser"
    );
    assert!(
        trap_log(&mut c).iter().all(|(who, _)| who == "appowner"),
        "{:?}",
        trap_log(&mut c)
    );
}

#[test]
fn nobody_can_stall_the_worker_with_an_advisory_lock_and_status_answers_under_locks() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.file_pattern = '*'",
    ]));
    c.execute("CREATE ROLE nobody LOGIN");
    let mut nobody = c.connect_as("nobody");
    // The key 0.1.0 used to order chunks with DROP EXTENSION.
    nobody
        .batch_execute("SELECT pg_advisory_lock(7305805536302559843)")
        .unwrap();
    c.write_file_atomic("a.csv", &gen_file(30, 5));
    c.wait_files_done(1, Duration::from_secs(30));
    // The default archive and failed folders inside the input folder are not input.
    c.reload(&[("ecommerce_ingest.processed_action", "archive")]);
    c.write_file_atomic("b.csv", &gen_file(31, 5));
    c.wait_for("b.csv archived", Duration::from_secs(20), |c| {
        c.input_dir().join("archive/b.csv").exists()
    });
    c.full_trigger();
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE status <> 'done'"),
        0
    );
    // A superuser's ACCESS EXCLUSIVE lock on the extension's own table: ingest_status()
    // still answers, and says what the worker waits for.
    let mut locker = c.connect_to("postgres");
    locker
        .batch_execute("BEGIN; LOCK TABLE ingest_control IN ACCESS EXCLUSIVE MODE;")
        .unwrap();
    c.write_file_atomic("c.csv", &gen_file(32, 5));
    let t = std::time::Instant::now();
    let s = c.status();
    println!("{:?} {s:?}", t.elapsed());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "ingest_status() took {:?}",
        t.elapsed()
    );
    c.wait_for("waiting_for_lock", Duration::from_secs(10), |c| {
        c.status().state == "waiting_for_lock"
    });
    locker.batch_execute("COMMIT").unwrap();
    c.wait_files_done(3, Duration::from_secs(30));
}
