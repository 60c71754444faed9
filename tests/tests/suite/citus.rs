//! Citus targets. Citus is not packaged here, so its catalog table `pg_dist_partition` is
//! imitated (what the extension reads to know a Citus table): the events pipeline must refuse
//! to COPY into a distributed `user_events`, and a pipeline must send a Citus table's rows
//! through the planner (an `INSERT … SELECT`, which Citus routes to the shards), never COPY.
//! A rule (which INSERT applies and COPY does not) shows which way the rows went. What was
//! verified with a real Citus build is in docs/scale.md.

use e2e::*;
use std::time::Duration;

#[test]
fn a_citus_table_is_never_written_with_copy() {
    let mut c = Cluster::start(ClusterOptions::default());
    let dir = c.root_dir().join("dist");
    postgres_folder(&dir);
    c.execute(
        "CREATE TABLE dist_t (id int, v text);
         CREATE TABLE through_planner (id int);
         CREATE RULE seen AS ON INSERT TO dist_t DO ALSO INSERT INTO through_planner VALUES (NEW.id);
         SET allow_system_table_mods = on;
         CREATE TABLE pg_catalog.pg_dist_partition (logicalrelid regclass);
         RESET allow_system_table_mods;
         INSERT INTO pg_catalog.pg_dist_partition VALUES ('dist_t'), ('user_events');",
    );
    c.execute(&format!(
        "SELECT ingest_create_pipeline('dist', {}, 'dist_t', 'csv', '{{\"trigger_interval\": 100}}')",
        lit(&dir.display().to_string())
    ));
    // The events pipeline: in error, saying why, and ingests nothing.
    c.write_file_atomic("e.csv", &gen_file(1, 10));
    c.wait_for(
        "the events pipeline to refuse",
        Duration::from_secs(30),
        |c| {
            let s = c.status();
            s.state == "error" && s.detail.contains("Citus table")
        },
    );
    // The pipeline: every row through the planner.
    write_atomic(&dir, "d.csv", b"id,v\n1,a\n2,b\n3,c\n");
    c.wait_for("the pipeline's file", Duration::from_secs(30), |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE pipeline = 'dist' AND status = 'done'") == 1
    });
    assert_eq!(c.int("SELECT count(*) FROM dist_t"), 3);
    assert_eq!(c.int("SELECT count(*) FROM through_planner"), 3);
    assert_eq!(c.int("SELECT count(*) FROM user_events"), 0);
    // Not a Citus table any more: the events pipeline goes on.
    c.execute(
        "DELETE FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'user_events'::regclass",
    );
    c.wait_for("the events file", Duration::from_secs(30), |c| {
        c.int("SELECT count(*) FROM ingest_files WHERE pipeline = 'events' AND status = 'done'")
            == 1
    });
    assert_eq!(c.int("SELECT count(*) FROM user_events"), 10);
}
