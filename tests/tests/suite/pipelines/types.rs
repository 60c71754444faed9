//! Pipelines: Every type: good values land exactly, a bad value rejects its row only.

use super::*;
use e2e::*;

const MIX_DDL: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent VALUES (1), (2);
CREATE TABLE mix (
    id int PRIMARY KEY,
    t text, vc varchar(5), ch char(3), si smallint, i int, bi bigint, nu numeric(6,2),
    nbig numeric, re real, dp double precision, bo boolean, d date, tm time, ts timestamp,
    tz timestamptz, iv interval, u uuid, j json, jb jsonb, by bytea, ip inet, ia int[],
    ta text[], m mood, p posint,
    pid int REFERENCES parent (id),
    must text NOT NULL,
    chk int CHECK (chk < 100),
    ident bigint GENERATED ALWAYS AS IDENTITY,
    dfl text DEFAULT 'hello',
    gen int GENERATED ALWAYS AS (id * 2) STORED
);";

/// The columns read back, as PostgreSQL prints them (TimeZone UTC).
const MIX_COLUMNS: &str =
    "id, t, vc, ch, si, i, bi, nu, nbig, re, dp, bo, d, tm, ts, tz, iv, u, j, jb, by, ip, ia, ta, m, p, pid, must, chk, dfl, gen";

/// The values of the good row, as PostgreSQL prints them, after `id`.
fn mix_good_printed(j: &str) -> Vec<Option<String>> {
    [
        "hello, world",
        "abcde",
        "ab ",
        "-32768",
        "2147483647",
        "9223372036854775807",
        "1234.57",
        "123456789012345678901234567890.123456789",
        "1.5",
        "3.141592653589793",
        "t",
        "2024-02-29",
        "23:59:59.999999",
        "2024-01-02 03:04:05.123456",
        "2024-01-02 01:04:05+00",
        "1 day 02:03:04",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        j,
        "{\"a\": [1, 2], \"b\": 1}",
        "\\x0001ff",
        "192.168.0.1/24",
        "{1,2,NULL}",
        "{a,\"b,c\",\"d\\\"e\"}",
        "happy",
        "7",
        "1",
        "must",
        "99",
        "hello",
    ]
    .iter()
    .map(|v| s(v))
    .collect()
}

fn mix_rows(c: &mut Cluster, ids: &str) -> Vec<Vec<Option<String>>> {
    rows_text(
        c,
        &format!("SET TimeZone = 'UTC'; SELECT {MIX_COLUMNS} FROM mix WHERE id {ids} ORDER BY id"),
    )
}

#[test]
fn every_type_converts_as_copy_does_and_a_bad_value_or_a_violated_constraint_rejects_only_its_row()
{
    let mut c = Cluster::start(ClusterOptions::default());
    c.execute(MIX_DDL);
    let dir = folder(&c, "mix");
    // Header names match case-insensitively; "text_value" is mapped to t.
    create(
        &mut c,
        "mix",
        &dir,
        "mix",
        "csv",
        r#"{"trigger_interval": 100, "mapping": {"text_value": "t"}}"#,
    );
    let header = "ID,text_value,VC,ch,si,i,bi,nu,nbig,re,dp,bo,d,tm,ts,tz,iv,u,j,jb,by,ip,ia,ta,m,p,pid,must,chk";
    // The good row's values, in header order after id.
    let good: Vec<&str> = vec![
        "\"hello, world\"",
        "abcde",
        "ab",
        "-32768",
        "2147483647",
        "9223372036854775807",
        "1234.565",
        "123456789012345678901234567890.123456789",
        "1.5",
        "3.141592653589793",
        "yes",
        "2024-02-29",
        "23:59:59.999999",
        "2024-01-02 03:04:05.123456",
        "2024-01-02T03:04:05+02:00",
        "1 day 02:03:04",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "\"{\"\"b\"\": 1, \"\"a\"\": [1, 2]}\"",
        "\"{\"\"b\"\": 1, \"\"a\"\": [1, 2]}\"",
        "\\x0001ff",
        "192.168.0.1/24",
        "\"{1,2,NULL}\"",
        "\"{a,\"\"b,c\"\",\"\"d\\\"\"e\"\"}\"",
        "happy",
        "7",
        "1",
        "must",
        "99",
    ];
    let cols: Vec<&str> = header.split(',').skip(1).collect();
    assert_eq!(cols.len(), good.len());
    // A row with only id and must (everything else NULL, t an empty string).
    let sparse = |id: i32, col: &str, v: &str| -> String {
        cols.iter()
            .map(|c| match *c {
                _ if *c == col => v.to_string(),
                "text_value" => "\"\"".to_string(),
                "must" => "m".to_string(),
                _ => String::new(),
            })
            .fold(id.to_string(), |acc, v| format!("{acc},{v}"))
    };
    // One bad value per column (line, column, value, PostgreSQL's message, SQLSTATE).
    let bad: Vec<(&str, &str, &str, &str)> = vec![
        ("VC", "abcdef", "value too long for type character varying(5)", "22001"),
        ("ch", "abcd", "value too long for type character(3)", "22001"),
        ("si", "32768", "value \"32768\" is out of range for type smallint", "22003"),
        ("i", "2147483648", "value \"2147483648\" is out of range for type integer", "22003"),
        ("bi", "9223372036854775808", "value \"9223372036854775808\" is out of range for type bigint", "22003"),
        ("nu", "12345.67", "numeric field overflow: A field with precision 6, scale 2 must round to an absolute value less than 10^4.", "22003"),
        ("nbig", "1.2.3", "invalid input syntax for type numeric: \"1.2.3\"", "22P02"),
        ("re", "abc", "invalid input syntax for type real: \"abc\"", "22P02"),
        ("dp", "1e400", "\"1e400\" is out of range for type double precision", "22003"),
        ("bo", "maybe", "invalid input syntax for type boolean: \"maybe\"", "22P02"),
        ("d", "2023-02-29", "date/time field value out of range: \"2023-02-29\"", "22008"),
        ("tm", "25:00:00", "date/time field value out of range: \"25:00:00\"", "22008"),
        ("ts", "soon", "invalid input syntax for type timestamp: \"soon\"", "22007"),
        ("tz", "2024-13-01 00:00+00", "date/time field value out of range: \"2024-13-01 00:00+00\"", "22008"),
        ("iv", "1 fortnight", "invalid input syntax for type interval: \"1 fortnight\"", "22007"),
        ("u", "not-a-uuid", "invalid input syntax for type uuid: \"not-a-uuid\"", "22P02"),
        ("j", "{bad", "invalid input syntax for type json: Token \"bad\" is invalid.", "22P02"),
        ("jb", "\"[1,\"", "invalid input syntax for type json: The input string ended unexpectedly.", "22P02"),
        ("by", "\\xZZ", "invalid hexadecimal digit: \"Z\"", "22023"),
        ("ip", "300.1.1.1", "invalid input syntax for type inet: \"300.1.1.1\"", "22P02"),
        ("ia", "\"{1,x}\"", "invalid input syntax for type integer: \"x\"", "22P02"),
        ("ta", "{unterminated", "malformed array literal: \"{unterminated\": Unexpected end of input.", "22P02"),
        ("m", "meh", "invalid input value for enum mood: \"meh\"", "22P02"),
        ("p", "-1", "value for domain posint violates check constraint \"posint_check\"", "23514"),
    ];
    let mut text = format!("{header}\n1,{}\n", good.join(","));
    text += &format!("{}\n", sparse(2, "", ""));
    let first_bad_line = 4;
    for (k, (col, v, _, _)) in bad.iter().enumerate() {
        text += &format!("{}\n", sparse(10 + k as i32, col, v));
    }
    // Constraint violations: CHECK, NOT NULL, primary key, foreign key.
    let l_check = first_bad_line + bad.len() as i64;
    text += &format!("{}\n", sparse(50, "chk", "100"));
    text += &format!("{}\n", sparse(51, "must", ""));
    text += &format!("{}\n", sparse(1, "", ""));
    text += &format!("{}\n", sparse(53, "pid", "3"));
    // A good row after all of them.
    text += &format!("{}\n", sparse(3, "pid", "2"));
    write_atomic(&dir, "mix.csv", text.as_bytes());
    wait_done(&mut c, "mix", 1);

    let got = rejects(&mut c, "mix");
    let mut want: Vec<Reject> = Vec::new();
    for (k, (col, _, msg, state)) in bad.iter().enumerate() {
        let column = col.to_lowercase();
        want.push(refused(
            "mix.csv",
            first_bad_line + k as i64,
            Some(&column),
            msg,
            state,
        ));
    }
    want.push(refused(
        "mix.csv",
        l_check + 2,
        None,
        "duplicate key value violates unique constraint \"mix_pkey\": Key (id)=(1) already exists.",
        "23505",
    ));
    want.push(refused(
        "mix.csv",
        l_check + 3,
        None,
        "insert or update on table \"mix\" violates foreign key constraint \"mix_pid_fkey\": Key (pid)=(3) is not present in table \"parent\".",
        "23503",
    ));
    // CHECK and NOT NULL quote the failing row, whose identity value depends on how many
    // attempts consumed the sequence: compared without it.
    let (check, not_null): (Vec<Reject>, Vec<Reject>) = (
        got.iter().filter(|r| r.1 == l_check).cloned().collect(),
        got.iter().filter(|r| r.1 == l_check + 1).cloned().collect(),
    );
    let got_rest: Vec<Reject> = got
        .iter()
        .filter(|r| r.1 != l_check && r.1 != l_check + 1)
        .cloned()
        .collect();
    assert_rejects(&got_rest, &want);
    // The failing row: id, t (empty), 25 NULLs, must, chk, ident (not compared), dfl, gen.
    let nulls = ", null".repeat(25);
    for (r, head, row_start, row_end, state) in [
        (
            &check,
            "new row for relation \"mix\" violates check constraint \"mix_chk_check\"",
            format!("(50, {nulls}, m, 100, "),
            ", hello, 100).",
            "23514",
        ),
        (
            &not_null,
            "null value in column \"must\" of relation \"mix\" violates not-null constraint",
            format!("(51, {nulls}, null, null, "),
            ", hello, 102).",
            "23502",
        ),
    ] {
        assert_eq!(r.len(), 1, "{got:#?}");
        let (f, _, column, reason) = &r[0];
        assert_eq!((f.as_str(), column), ("mix.csv", &None));
        let prefix = format!("refused by the database: {head}: Failing row contains {row_start}");
        let suffix = format!("{row_end} (SQLSTATE {state})");
        assert!(
            reason.starts_with(&prefix) && reason.ends_with(&suffix),
            "{reason}\nexpected {prefix}…{suffix}"
        );
    }
    assert_eq!(
        files(&mut c, "mix"),
        vec![file("mix.csv", "done", 3, bad.len() as i64 + 4)]
    );

    // The good rows, exactly; the sparse ones with their defaults, identity and generated
    // column.
    let mut row1 = vec![s("1")];
    row1.extend(mix_good_printed("{\"b\": 1, \"a\": [1, 2]}"));
    row1.push(s("2"));
    let sparse_row = |id: i32, pid: Option<&str>| {
        let mut r = vec![s(&id.to_string()), s("")];
        r.extend(std::iter::repeat_n(None, 24));
        r.push(pid.map(String::from));
        r.extend([s("m"), None, s("hello"), s(&(id * 2).to_string())]);
        r
    };
    assert_eq!(
        mix_rows(&mut c, "< 100"),
        vec![row1, sparse_row(2, None), sparse_row(3, Some("2"))]
    );
    assert_eq!(
        c.int("SELECT count(DISTINCT ident) FROM mix WHERE ident IS NOT NULL"),
        3,
        "identity values"
    );

    // The same values as NDJSON: JSON numbers, booleans, objects and arrays as they are
    // written (a number keeps all its digits, a json column keeps the text as written).
    let nd = folder(&c, "mix_nd");
    create(
        &mut c,
        "mix_nd",
        &nd,
        "mix",
        "ndjson",
        r#"{"trigger_interval": 100}"#,
    );
    let lines = [
        r#"{"id":100,"t":"hello, world","vc":"abcde","ch":"ab","si":-32768,"i":2147483647,"bi":9223372036854775807,"nu":1234.565,"nbig":123456789012345678901234567890.123456789,"re":1.5,"dp":3.141592653589793,"bo":true,"d":"2024-02-29","tm":"23:59:59.999999","ts":"2024-01-02 03:04:05.123456","tz":"2024-01-02T03:04:05+02:00","iv":"1 day 02:03:04","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","j":{"b":1,"a":[1,2]},"jb":{"b":1,"a":[1,2]},"by":"\\x0001ff","ip":"192.168.0.1/24","ia":[1,2,null],"ta":["a","b,c","d\"e"],"m":"happy","p":7,"pid":1,"must":"must","chk":99}"#,
        r#"{"id":101,"must":"m","si":40000}"#,
        r#"{"id":102,"must":"m","ia":[1,"x"]}"#,
        r#"{"id":103,"ia":[1]}"#,
        r#"{"id":104,"must":"m","nu":1e2,"ia":[[1,2],[3,4]]}"#,
    ];
    write_atomic(
        &nd,
        "mix.ndjson",
        format!("{}\n", lines.join("\n")).as_bytes(),
    );
    wait_done(&mut c, "mix_nd", 1);
    let mut row100 = vec![s("100")];
    row100.extend(mix_good_printed("{\"b\":1,\"a\":[1,2]}"));
    row100.push(s("200"));
    let got = mix_rows(&mut c, ">= 100");
    assert_eq!(got.len(), 2, "{got:#?}");
    for (i, (g, w)) in got[0].iter().zip(&row100).enumerate() {
        assert_eq!(g, w, "column {}", MIX_COLUMNS.split(", ").nth(i).unwrap());
    }
    assert_eq!(
        rows_text(&mut c, "SELECT nu::text, ia::text FROM mix WHERE id = 104"),
        vec![vec![s("100.00"), s("{{1,2},{3,4}}")]]
    );
    assert_rejects(
        &rejects(&mut c, "mix_nd"),
        &[
            refused(
                "mix.ndjson",
                2,
                Some("si"),
                "value \"40000\" is out of range for type smallint",
                "22003",
            ),
            refused(
                "mix.ndjson",
                3,
                Some("ia"),
                "invalid input syntax for type integer: \"x\"",
                "22P02",
            ),
            (
                "mix.ndjson".into(),
                4,
                s("must"),
                "required column \"must\" (NOT NULL without default) is missing or null".into(),
            ),
        ],
    );
    assert_consistent(&mut c, "mix");
    assert_consistent(&mut c, "mix_nd");
}
