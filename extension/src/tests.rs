use pgrx::prelude::*;

#[pg_test]
fn status_has_one_row() {
    let n = Spi::get_one::<i64>("SELECT count(*) FROM ingest_status()").unwrap();
    assert_eq!(n, Some(1));
}
