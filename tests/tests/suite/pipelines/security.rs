//! Pipelines: Security: who may create what, folders inside the allowed roots, the owner's privileges.

use super::*;
use e2e::*;

/// The error `sql` gives when `client` runs it.
fn error_of(client: &mut postgres::Client, sql: &str) -> String {
    expect_db_error(client.batch_execute(sql), sql)
}

/// Waits for pipeline `p`'s state to be `state`; returns its detail.
fn wait_state(c: &mut Cluster, p: &str, state: &str) -> String {
    let mut detail = String::new();
    c.wait_for(&format!("pipeline {p} in state {state}"), T, |c| {
        let st = pstatus(c, p);
        detail = st.detail;
        st.state == state
    });
    detail
}

/// Waits until pipeline `p` is in `state` with a detail that contains `needle`: for a state
/// reached through the same state with another reason (a folder swapped for a link is missing
/// for a moment in between). Times out (the test fails) if it never says so.
fn wait_state_saying(c: &mut Cluster, p: &str, state: &str, needle: &str) {
    c.wait_for(
        &format!("pipeline {p} in state {state} saying {needle:?}"),
        T,
        |c| {
            let st = pstatus(c, p);
            st.state == state && st.detail.contains(needle)
        },
    );
}

/// Gives pipeline `p` time for several triggers (its trigger_interval is 100 ms) and asks for
/// one more: for checking that something does not happen.
fn let_it_trigger(c: &mut Cluster, p: &str) {
    c.execute(&format!("SELECT ingest_trigger({})", lit(p)));
    std::thread::sleep(Duration::from_millis(800));
    c.execute(&format!("SELECT ingest_trigger({})", lit(p)));
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn a_non_superuser_admin_is_held_to_the_allowed_roots_and_inserts_with_its_own_privileges() {
    let mut c = Cluster::start(ClusterOptions::default());
    let allowed = folder(&c, "allowed");
    let outside = folder(&c, "outside");
    let evil_twin = folder(&c, "allowed_twin");
    let input = folder(&c, "allowed/in");
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
    let roots = format!("{}, /nonexistent/root", allowed.display());
    c.reload(&[("ecommerce_ingest.allowed_roots", &roots)]);
    c.wait_for("allowed_roots set", T, |c| {
        c.text("SHOW ecommerce_ingest.allowed_roots").as_deref() == Some(roots.as_str())
    });
    c.execute(
        "CREATE ROLE alice LOGIN; GRANT ecommerce_ingest_admin TO alice;
         CREATE ROLE bob LOGIN; GRANT ecommerce_ingest_admin TO bob;
         CREATE ROLE nobody LOGIN;
         CREATE TABLE sec (id int PRIMARY KEY, who text DEFAULT current_user, trig_user text);
         CREATE FUNCTION sec_stamp() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN NEW.trig_user := current_user; RETURN NEW; END $$;
         CREATE TRIGGER sec_stamp BEFORE INSERT ON sec FOR EACH ROW EXECUTE FUNCTION sec_stamp();
         GRANT INSERT, SELECT ON sec TO alice;
         CREATE TABLE noins (id int); GRANT SELECT ON noins TO alice;",
    );
    let mut alice = c.connect_as("alice");
    let mut bob = c.connect_as("bob");
    let mut nobody = c.connect_as("nobody");
    let opts = r#"{"trigger_interval": 100}"#;

    // Folders outside the roots, however they are spelled.
    let refused_dirs: Vec<(String, &str)> = vec![
        (outside.display().to_string(), "is not inside ecommerce_ingest.allowed_roots"),
        (
            format!("{}/../outside", allowed.display()),
            "once symbolic links and '..' are resolved, which is not inside ecommerce_ingest.allowed_roots",
        ),
        (
            allowed.join("link").display().to_string(),
            "once symbolic links and '..' are resolved, which is not inside ecommerce_ingest.allowed_roots",
        ),
        (
            allowed.join("link/sub").display().to_string(),
            "once symbolic links and '..' are resolved, which is not inside ecommerce_ingest.allowed_roots",
        ),
        (evil_twin.display().to_string(), "is not inside ecommerce_ingest.allowed_roots"),
        ("relative/dir".to_string(), "must be an absolute path"),
    ];
    for (dir, why) in &refused_dirs {
        let err = error_of(
            &mut alice,
            &create_sql("a1", Path::new(dir), "sec", "csv", opts),
        );
        assert!(err.contains(why), "{dir}: {err}");
        if !dir.starts_with("relative") {
            assert!(err.contains("input_dir"), "{dir}: {err}");
        }
    }
    // The archive and failed folders too.
    for key in ["archive_dir", "failed_dir"] {
        let err = error_of(
            &mut alice,
            &create_sql(
                "a1",
                &input,
                "sec",
                "csv",
                &format!(r#"{{"{key}": "{}/../outside"}}"#, allowed.display()),
            ),
        );
        assert!(
            err.contains(key) && err.contains("not inside ecommerce_ingest.allowed_roots"),
            "{key}: {err}"
        );
    }
    // A table the owner may not insert into.
    let err = error_of(&mut alice, &create_sql("a1", &input, "noins", "csv", opts));
    assert!(
        err.contains("the pipeline's owner has no INSERT privilege on public.noins"),
        "{err}"
    );
    // Not an admin: no EXECUTE privilege; and even with it, the function refuses.
    let err = error_of(&mut nobody, &create_sql("a1", &input, "sec", "csv", opts));
    assert!(
        err.contains("permission denied for function ingest_create_pipeline"),
        "{err}"
    );
    c.execute("GRANT EXECUTE ON FUNCTION ingest_create_pipeline TO nobody");
    let err = error_of(&mut nobody, &create_sql("a1", &input, "sec", "csv", opts));
    assert!(
        err.contains("only superusers and members of ecommerce_ingest_admin manage pipelines"),
        "{err}"
    );
    assert_eq!(c.int("SELECT count(*) FROM ingest_pipelines"), 0);

    // Inside the roots: created, owned by alice.
    alice
        .batch_execute(&create_sql("alice_p", &input, "sec", "csv", opts))
        .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    assert_eq!(
        c.text("SELECT owner::text FROM ingest_pipelines WHERE pipeline_name = 'alice_p'")
            .as_deref(),
        Some("alice")
    );
    // Another admin may neither drop nor change it; nor may alice move it out of the roots.
    for sql in [
        "SELECT ingest_drop_pipeline('alice_p')",
        "SELECT ingest_alter_pipeline('alice_p', options => '{\"batch_rows\": 5}')",
    ] {
        let err = error_of(&mut bob, sql);
        assert!(
            err.contains(
                "only the owner of pipeline \"alice_p\" (or a superuser) may change or drop it"
            ),
            "{sql}: {err}"
        );
    }
    let err = error_of(
        &mut alice,
        &format!(
            "SELECT ingest_alter_pipeline('alice_p', input_dir => {})",
            lit(&allowed.join("link").display().to_string())
        ),
    );
    assert!(
        err.contains("not inside ecommerce_ingest.allowed_roots"),
        "{err}"
    );

    // Rows are inserted as alice: the column default and the trigger see her.
    write_atomic(&input, "a.csv", b"id\n1\n2\n");
    // A symbolic link to a file outside the roots is never followed.
    std::fs::write(outside.join("secret.csv"), "id\n666\n").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.csv"), input.join("b.csv")).unwrap();
    wait_done(&mut c, "alice_p", 1);
    c.wait_for("the symlink judged", T, |c| files(c, "alice_p").len() == 2);
    assert_eq!(
        rows_text(&mut c, "SELECT id, who, trig_user FROM sec ORDER BY id"),
        vec![
            vec![s("1"), s("alice"), s("alice")],
            vec![s("2"), s("alice"), s("alice")]
        ]
    );
    assert_eq!(
        files(&mut c, "alice_p"),
        vec![file("a.csv", "done", 2, 0), file("b.csv", "failed", 0, 0)]
    );
    let (why, _) = file_error(&mut c, "alice_p", "b.csv");
    assert!(
        why.as_deref().is_some_and(|w| w.contains("symbolic link")),
        "{why:?}"
    );

    // INSERT revoked: state error saying why, nothing ingested; granted again: it goes on.
    c.execute("REVOKE INSERT ON sec FROM alice");
    let detail = wait_state(&mut c, "alice_p", "error");
    assert!(
        detail.contains("its owner has no INSERT privilege on public.sec"),
        "{detail}"
    );
    write_atomic(&input, "c.csv", b"id\n3\n");
    let_it_trigger(&mut c, "alice_p");
    assert_eq!(c.int("SELECT count(*) FROM sec"), 2);
    assert_eq!(pstatus(&mut c, "alice_p").state, "error");
    c.execute("GRANT INSERT ON sec TO alice");
    wait_done(&mut c, "alice_p", 2);
    assert_eq!(
        wait_state(&mut c, "alice_p", "running"),
        "ingesting files as they arrive"
    );
    assert_eq!(
        rows_text(&mut c, "SELECT who, trig_user FROM sec WHERE id = 3"),
        vec![vec![s("alice"), s("alice")]]
    );

    // Row-level security applying to alice: her rows go in through INSERT … SELECT (COPY
    // cannot enforce policies), which does; a row a policy refuses is a reject, saying so.
    c.execute(
        "ALTER TABLE sec ENABLE ROW LEVEL SECURITY;
         CREATE POLICY see_all ON sec FOR SELECT USING (true);
         CREATE POLICY only_small ON sec FOR INSERT WITH CHECK (id < 100);",
    );
    write_atomic(&input, "d.csv", b"id\n4\n500\n");
    wait_done(&mut c, "alice_p", 3);
    assert_eq!(
        files(&mut c, "alice_p")
            .into_iter()
            .filter(|f| f.0 == "d.csv")
            .collect::<Vec<_>>(),
        vec![file("d.csv", "done", 1, 1)]
    );
    let r = rejects(&mut c, "alice_p");
    assert!(
        r.iter()
            .any(|x| x.0 == "d.csv" && x.1 == 3 && x.3.contains("row-level security")),
        "{r:?}"
    );
    assert_eq!(c.int("SELECT count(*) FROM sec"), 4);
    // On that path too, a unique key refuses a row alone (4 is there already).
    write_atomic(&input, "e.csv", b"id\n4\n5\n");
    wait_done(&mut c, "alice_p", 4);
    assert_eq!(
        files(&mut c, "alice_p")
            .into_iter()
            .filter(|f| f.0 == "e.csv")
            .collect::<Vec<_>>(),
        vec![file("e.csv", "done", 1, 1)]
    );
    assert_eq!(c.int("SELECT count(*) FROM sec"), 5);
    c.execute("ALTER TABLE sec DISABLE ROW LEVEL SECURITY");

    // The roots changed by a superuser: alice's folder is outside them now.
    c.reload(&[("ecommerce_ingest.allowed_roots", "/nonexistent/root")]);
    let detail = wait_state(&mut c, "alice_p", "error");
    assert!(
        detail.contains("is not inside ecommerce_ingest.allowed_roots (/nonexistent/root)"),
        "{detail}"
    );
    c.reload(&[("ecommerce_ingest.allowed_roots", &roots)]);
    wait_state(&mut c, "alice_p", "running");

    // A folder inside the roots replaced later by a symbolic link out of them stops it.
    let later = allowed.join("later");
    postgres_folder(&later);
    alice
        .batch_execute(&create_sql("alice_l", &later, "sec", "csv", opts))
        .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    wait_state(&mut c, "alice_l", "running");
    // Between the two calls the folder is missing: the state may say that first.
    std::fs::remove_dir(&later).unwrap();
    std::os::unix::fs::symlink(&outside, &later).unwrap();
    wait_state_saying(
        &mut c,
        "alice_l",
        "error",
        "once symbolic links and '..' are resolved",
    );
    let_it_trigger(&mut c, "alice_l");
    // Whenever the swap fell (even between a trigger's check of the folder and the reading of
    // its files), the file outside was never read: at most listed, as not readable.
    assert_eq!(c.int("SELECT count(*) FROM sec WHERE id = 666"), 0);
    for (f, status, ok, rejected) in files(&mut c, "alice_l") {
        assert_eq!(
            (f.as_str(), status.as_str(), ok, rejected),
            ("secret.csv", "error", 0, 0)
        );
    }

    // The owner drops it.
    alice
        .batch_execute("SELECT ingest_drop_pipeline('alice_l')")
        .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    assert_eq!(c.int("SELECT count(*) FROM ingest_pipelines"), 1);
    assert_consistent(&mut c, "alice_p");
}

/// The archive folder replaced by a symbolic link out of the allowed roots between the
/// trigger's folder check and the move (a transform that sleeps holds the chunk open): the file
/// is not moved through the link; the state says why.
#[test]
fn a_processed_file_is_never_moved_through_a_folder_swapped_for_a_link() {
    let mut c = Cluster::start(ClusterOptions::default());
    let root = c.root_dir().join("roots");
    let input = root.join("in");
    let archive = root.join("arch");
    postgres_folder(&input);
    postgres_folder(&archive);
    let outside = c.root_dir().join("outside");
    postgres_folder(&outside);
    c.reload(&[(
        "ecommerce_ingest.allowed_roots",
        &root.display().to_string(),
    )]);
    c.execute(
        "CREATE ROLE mallory LOGIN; GRANT ecommerce_ingest_admin TO mallory;
         CREATE TABLE mt (id int); GRANT INSERT ON mt TO mallory;",
    );
    let mut m = c.connect_as("mallory");
    m.batch_execute(&format!(
        "SELECT ingest_create_pipeline('swap', {}, 'mt', 'csv',
                 {}::jsonb,
                 'INSERT INTO mt SELECT id FROM $batch WHERE pg_sleep(3) IS NOT NULL')",
        lit(&input.display().to_string()),
        lit(&format!(
            r#"{{"trigger_interval": 100, "min_file_age": 0, "processed_action": "archive", "archive_dir": "{}"}}"#,
            archive.display()
        ))
    ))
    .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    write_atomic(&input, "f.csv", b"id\n1\n");
    // While the transform sleeps, the archive folder becomes a link out of the roots.
    c.wait_for("the transform sleeping", T, |c| {
        c.int("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") > 0
    });
    std::fs::remove_dir(&archive).unwrap();
    std::os::unix::fs::symlink(&outside, &archive).unwrap();
    wait_done(&mut c, "swap", 1);
    c.wait_for("the refused move reported", T, |c| {
        let st = pstatus(c, "swap");
        st.state == "error" || st.state == "degraded"
    });
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "a file was moved out of the allowed roots"
    );
    assert!(
        input.join("f.csv").exists(),
        "the file left the input folder"
    );
    let st = pstatus(&mut c, "swap");
    assert!(st.state == "error" || st.state == "degraded", "{st:?}");
}

/// A pipeline's input folder is its own: an admin cannot point a pipeline at another
/// pipeline's folders (or the events pipeline's) to take its files, nor move files into
/// another's input folder to have them ingested into a table it may not write; archive and
/// failed folders may be shared. A catalog changed behind the functions' back (or folders
/// linked later) stops the pipeline at its next trigger, before it reads anything.
#[test]
fn a_pipeline_s_input_folder_is_its_own() {
    let mut c = Cluster::start(ClusterOptions::default());
    let events_in = c.input_dir().to_path_buf();
    let mine = folder(&c, "mine");
    let theirs = folder(&c, "theirs");
    let shared_archive = folder(&c, "shared_archive");
    let roots = c.root_dir().display().to_string();
    c.reload(&[("ecommerce_ingest.allowed_roots", &roots)]);
    c.wait_for("allowed_roots set", T, |c| {
        c.text("SHOW ecommerce_ingest.allowed_roots").as_deref() == Some(roots.as_str())
    });
    c.execute(
        "CREATE ROLE adm LOGIN; GRANT ecommerce_ingest_admin TO adm;
         CREATE TABLE theirs_t (id int); CREATE TABLE mine_t (id int);
         GRANT INSERT, SELECT ON mine_t TO adm;",
    );
    let arch = |d: &Path| {
        format!(
            r#"{{"trigger_interval": 100, "min_file_age": 0, "processed_action": "archive", "archive_dir": "{}"}}"#,
            d.display()
        )
    };
    create(
        &mut c,
        "theirs",
        &theirs,
        "theirs_t",
        "csv",
        &arch(&shared_archive),
    );
    let mut adm = c.connect_as("adm");
    let opts = |extra: &str| format!(r#"{{"trigger_interval": 100, "min_file_age": 0{extra}}}"#);
    let events_archive = events_in.join("archive");
    let refused: Vec<(String, String, &str)> = vec![
        // Reading another's input folder (the events pipeline's too), or its archive.
        (
            events_in.display().to_string(),
            opts(""),
            r#"the input folder EV is also the input folder of pipeline "events""#,
        ),
        (
            theirs.display().to_string(),
            opts(""),
            r#"the input folder TH is also the input folder of pipeline "theirs""#,
        ),
        (
            format!("{}/../theirs", mine.display()),
            opts(""),
            r#"is also the input folder of pipeline "theirs""#,
        ),
        (
            shared_archive.display().to_string(),
            opts(""),
            r#"is also the archive folder of pipeline "theirs""#,
        ),
        (
            events_archive.display().to_string(),
            opts(""),
            r#"is also the archive folder of pipeline "events""#,
        ),
        // Moving files into another's input folder.
        (
            mine.display().to_string(),
            opts(&format!(
                r#", "processed_action": "archive", "archive_dir": "{}""#,
                events_in.display()
            )),
            r#"the archive folder EV is also the input folder of pipeline "events""#,
        ),
        (
            mine.display().to_string(),
            opts(&format!(r#", "failed_dir": "{}""#, theirs.display())),
            r#"the failed folder TH is also the input folder of pipeline "theirs""#,
        ),
    ];
    let spell = |m: &str| {
        m.replace("EV", &events_in.display().to_string())
            .replace("TH", &theirs.display().to_string())
    };
    for (dir, o, why) in &refused {
        let sql = create_sql("mine", Path::new(dir), "mine_t", "csv", o);
        let err = error_of(&mut adm, &sql);
        assert!(err.contains(&spell(why)), "{dir} {o}: {err}");
        // A superuser is held to it too (a careless one loses files the same way).
        let err = error_of(c.client(), &sql);
        assert!(err.contains(&spell(why)), "superuser: {dir} {o}: {err}");
    }
    assert_eq!(c.int("SELECT count(*) FROM ingest_pipelines"), 1);
    // Its own input folder, sharing the other's archive folder: fine.
    adm.batch_execute(&create_sql(
        "mine",
        &mine,
        "mine_t",
        "csv",
        &arch(&shared_archive),
    ))
    .unwrap_or_else(|e| panic!("{}", db_error_text(&e)));
    // Nor can a change take another's folder.
    let err = error_of(
        &mut adm,
        &format!(
            "SELECT ingest_alter_pipeline('mine', input_dir => {})",
            lit(&theirs.display().to_string())
        ),
    );
    assert!(
        err.contains(r#"is also the input folder of pipeline "theirs""#),
        "{err}"
    );
    write_atomic(&mine, "m.csv", b"id\n1\n2\n");
    write_atomic(&theirs, "t.csv", b"id\n7\n");
    wait_done(&mut c, "mine", 1);
    wait_done(&mut c, "theirs", 1);
    assert!(shared_archive.join("m.csv").exists() && shared_archive.join("t.csv").exists());

    // Behind the functions' back (a superuser writing the catalog): the pipeline stops at its
    // next trigger, says why, and takes nothing of the events pipeline's files.
    c.execute(&format!(
        "UPDATE ingest_pipelines SET input_dir = {} WHERE pipeline_name = 'mine'",
        lit(&events_in.display().to_string())
    ));
    let detail = wait_state(&mut c, "mine", "error");
    assert!(
        detail.contains(r#"is also the input folder of pipeline "events""#),
        "{detail}"
    );
    let rows = 3;
    write_atomic(&events_in, "events_1.csv", &gen_file(7, rows));
    wait_done(&mut c, "events", 1);
    let_it_trigger(&mut c, "mine");
    assert_eq!(c.int("SELECT count(*) FROM user_events"), rows as i64);
    assert_eq!(c.int("SELECT count(*) FROM mine_t"), 2);
    assert_eq!(
        c.int("SELECT count(*) FROM ingest_files WHERE pipeline = 'mine'"),
        1,
        "the pipeline recorded a file of the events pipeline's"
    );
    assert_eq!(pstatus(&mut c, "mine").state, "error");
    assert_consistent(&mut c, "mine");
    assert_consistent(&mut c, "theirs");
}
