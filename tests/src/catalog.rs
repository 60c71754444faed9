//! The extension's SQL objects as the catalogs describe them, and the comparison of two such
//! descriptions (the upgrade test: an updated install against a fresh one).

use crate::sql::db_error_text;
use postgres::Client;
use std::fmt::Write as _;

/// One query per kind of object, each row `(object, field, value)`. `$1` is the extension's
/// name. Members are the objects `pg_depend` ties to the extension (deptype `e`); relations
/// also count the indexes of member tables, the sequences they own and the row types of
/// member composite types. Privileges are sorted `aclitem`s, so that the order of GRANTs does
/// not matter; OIDs never appear, names do.
const CATALOG_QUERIES: [&str; 9] = [
    // The extension itself and the tables pg_dump keeps (pg_extension_config_dump).
    "SELECT 'extension ' || e.extname, 'schema, relocatable',
            concat_ws(', ', e.extnamespace::regnamespace, e.extrelocatable)
       FROM pg_extension e WHERE e.extname = $1
     UNION ALL
     SELECT 'extension ' || e.extname, 'config dump of ' || c.cfg::regclass::text,
            coalesce(e.extcondition[c.n], 'NULL')
       FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY AS c(cfg, n)
      WHERE e.extname = $1",
    // Every member, whatever its kind (operators, casts, ...: at least they exist).
    "SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid), 'member', 'yes'
       FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass
                                           AND d.refobjid = e.oid
      WHERE d.deptype = 'e' AND e.extname = $1",
    // Functions and procedures.
    "WITH f AS (
        SELECT p.* , p.oid AS poid FROM pg_proc p
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1)
     SELECT 'function ' || poid::regprocedure::text, x.field, coalesce(x.value, 'NULL')
       FROM f, LATERAL (VALUES
         ('arguments', pg_get_function_arguments(poid)),
         ('result', pg_get_function_result(poid)),
         ('kind, volatility, strict, parallel, leakproof, returns set',
          concat_ws(', ', prokind, provolatile, proisstrict, proparallel, proleakproof, proretset)),
         ('security definer', prosecdef::text),
         ('config', proconfig::text),
         ('language, library, symbol',
          concat_ws(', ', (SELECT lanname FROM pg_language WHERE oid = prolang), coalesce(probin, '-'),
                    CASE WHEN probin IS NULL THEN md5(prosrc) ELSE prosrc END)),
         ('cost, rows', concat_ws(', ', procost, prorows)),
         ('owner', proowner::regrole::text),
         ('privileges', (SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(proacl) a)),
         ('comment', obj_description(poid, 'pg_proc')),
         ('definition', CASE WHEN prokind IN ('f', 'p') THEN pg_get_functiondef(poid) END)
       ) AS x(field, value)",
    // Relations: tables, views, sequences, indexes, composite types.
    "WITH member_rel AS (
        SELECT d.objid AS oid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
           AND d.deptype = 'e' AND e.extname = $1
        UNION SELECT t.typrelid FROM pg_type t
          JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1
         WHERE t.typrelid <> 0),
     rel AS (
        SELECT oid FROM member_rel
        UNION SELECT i.indexrelid FROM pg_index i JOIN member_rel m ON m.oid = i.indrelid
        UNION SELECT d.objid FROM pg_depend d JOIN member_rel m ON m.oid = d.refobjid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i') AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')
     SELECT 'relation ' || c.oid::regclass::text, x.field, coalesce(x.value, 'NULL')
       FROM rel JOIN pg_class c ON c.oid = rel.oid, LATERAL (VALUES
         ('kind, persistence', concat_ws(', ', c.relkind, c.relpersistence)),
         ('owner', c.relowner::regrole::text),
         ('privileges', (SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(c.relacl) a)),
         ('options', (SELECT string_agg(o, ', ' ORDER BY o) FROM unnest(c.reloptions) o)),
         ('row security, forced, replica identity',
          concat_ws(', ', c.relrowsecurity, c.relforcerowsecurity, c.relreplident)),
         ('comment', obj_description(c.oid, 'pg_class')),
         ('index', CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END),
         ('view', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END),
         ('sequence', (SELECT concat_ws(' ', format_type(s.seqtypid, NULL), 'start', s.seqstart,
                                        'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
                                        'cache', s.seqcache, 'cycle', s.seqcycle)
                         FROM pg_sequence s WHERE s.seqrelid = c.oid)),
         ('owned by', (SELECT string_agg(format('%s.%s (%s)', d.refobjid::regclass, a.attname, d.deptype), ', ')
                         FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                          AND c.relkind = 'S'))
       ) AS x(field, value)
      WHERE x.value IS NOT NULL OR x.field IN ('privileges', 'comment')",
    // Columns, with their position among the live columns (an added column comes last).
    "WITH rel AS (
        SELECT d.objid AS oid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
           AND d.deptype = 'e' AND e.extname = $1
        UNION SELECT t.typrelid FROM pg_type t
          JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1
         WHERE t.typrelid <> 0),
     col AS (
        SELECT a.*, row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS position
          FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
          JOIN pg_class c ON c.oid = a.attrelid
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind <> 'S')
     SELECT 'column ' || attrelid::regclass::text || '.' || quote_ident(attname), x.field,
            coalesce(x.value, 'NULL')
       FROM col, LATERAL (VALUES
         ('position', position::text),
         ('type', format_type(atttypid, atttypmod)
                  || CASE WHEN attcollation <> 0 AND attcollation <> (SELECT typcollation FROM pg_type WHERE oid = atttypid)
                          THEN ' COLLATE ' || attcollation::regcollation::text ELSE '' END),
         ('not null', attnotnull::text),
         ('default', (SELECT pg_get_expr(ad.adbin, ad.adrelid) FROM pg_attrdef ad
                       WHERE ad.adrelid = attrelid AND ad.adnum = attnum)),
         ('identity, generated', concat_ws(', ', quote_literal(attidentity::text), quote_literal(attgenerated::text))),
         ('privileges', (SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(attacl) a)),
         ('comment', col_description(attrelid, attnum))
       ) AS x(field, value)",
    // Constraints of member tables and domains.
    "SELECT 'constraint ' || coalesce(c.conrelid::regclass::text, c.contypid::regtype::text) || '.'
            || quote_ident(c.conname), x.field, coalesce(x.value, 'NULL')
       FROM pg_constraint c
       JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                       AND ((d.classid = 'pg_class'::regclass AND d.objid = c.conrelid)
                         OR (d.classid = 'pg_type'::regclass AND d.objid = c.contypid))
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1,
       LATERAL (VALUES
         ('definition', pg_get_constraintdef(c.oid)),
         ('deferrable, deferred, validated, no inherit',
          concat_ws(', ', c.condeferrable, c.condeferred, c.convalidated, c.connoinherit)),
         ('index', c.conindid::regclass::text),
         ('comment', obj_description(c.oid, 'pg_constraint'))
       ) AS x(field, value)
      WHERE x.field <> 'index' OR c.conindid <> 0",
    // Triggers and row-level security policies on member tables.
    "SELECT 'trigger ' || t.tgrelid::regclass::text || '.' || quote_ident(t.tgname), 'definition',
            format('%s (enabled %s)', pg_get_triggerdef(t.oid), t.tgenabled)
       FROM pg_trigger t
       JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = t.tgrelid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1
      WHERE NOT t.tgisinternal
     UNION ALL
     SELECT 'policy ' || p.polrelid::regclass::text || '.' || quote_ident(p.polname), 'definition',
            concat_ws(' ', p.polcmd, p.polpermissive,
                      (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',' ORDER BY 1)
                         FROM unnest(p.polroles) r),
                      pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
       FROM pg_policy p
       JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = p.polrelid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1",
    // Types (enums, domains, composites, base types).
    "SELECT 'type ' || t.oid::regtype::text, x.field, coalesce(x.value, 'NULL')
       FROM pg_type t
       JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1,
       LATERAL (VALUES
         ('kind', t.typtype::text),
         ('labels', (SELECT string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder)
                       FROM pg_enum WHERE enumtypid = t.oid)),
         ('base type, not null, default', CASE WHEN t.typtype = 'd' THEN
             concat_ws(', ', format_type(t.typbasetype, t.typtypmod), t.typnotnull,
                       coalesce(t.typdefault, 'NULL')) END),
         ('owner', t.typowner::regrole::text),
         ('privileges', (SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(t.typacl) a)),
         ('comment', obj_description(t.oid, 'pg_type'))
       ) AS x(field, value)",
    // Event triggers.
    "SELECT 'event trigger ' || quote_ident(t.evtname), 'definition',
            concat_ws(' ', t.evtevent, t.evtfoid::regproc::text, t.evttags::text, t.evtenabled)
       FROM pg_event_trigger t
       JOIN pg_depend d ON d.classid = 'pg_event_trigger'::regclass AND d.objid = t.oid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1",
];

/// A description of the SQL objects of extension `extname` in the database `client` is
/// connected to, one entry per (object, field): members, functions (arguments, result,
/// volatility, SECURITY DEFINER, SET options, library symbol, privileges, full definition),
/// tables, views, sequences and indexes (definition, options, privileges, comments), columns
/// (position, type, NOT NULL, default, identity, privileges), constraints, triggers, policies,
/// types, event triggers, and the tables registered for pg_dump. Two databases whose
/// descriptions are equal have the same extension objects; see [`assert_same_catalog`].
pub fn extension_catalog(
    client: &mut Client,
    extname: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for q in CATALOG_QUERIES {
        let rows = client
            .query(q, &[&extname])
            .unwrap_or_else(|e| panic!("catalog query failed: {}\n{q}", db_error_text(&e)));
        for r in rows {
            let key = format!("{} | {}", r.get::<_, String>(0), r.get::<_, String>(1));
            let value: String = r.get(2);
            if let Some(old) = out.insert(key.clone(), value) {
                panic!("catalog entry {key} twice (first {old:?})");
            }
        }
    }
    assert!(
        !out.is_empty(),
        "extension {extname} not found (no catalog entries)"
    );
    out
}

/// Fails, listing every difference, unless the two descriptions from [`extension_catalog`]
/// are equal. `a_name` and `b_name` say where each comes from ("after the update", "in a fresh
/// install"). An object found on one side only is shown once, with its fields.
pub fn assert_same_catalog(
    a_name: &str,
    a: &std::collections::BTreeMap<String, String>,
    b_name: &str,
    b: &std::collections::BTreeMap<String, String>,
) {
    use std::collections::{BTreeMap, BTreeSet};
    fn indent(v: &str) -> String {
        v.trim_end().replace('\n', "\n          ")
    }
    // object -> field -> value
    fn by_object(m: &BTreeMap<String, String>) -> BTreeMap<&str, BTreeMap<&str, &str>> {
        let mut out: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for (k, v) in m {
            let (object, field) = k.split_once(" | ").unwrap_or((k, ""));
            out.entry(object).or_default().insert(field, v);
        }
        out
    }
    let (oa, ob) = (by_object(a), by_object(b));
    let empty = BTreeMap::new();
    let mut diff = String::new();
    let mut n = 0;
    let objects: BTreeSet<&str> = oa.keys().chain(ob.keys()).copied().collect();
    for object in objects {
        let (fa, fb) = (
            oa.get(object).unwrap_or(&empty),
            ob.get(object).unwrap_or(&empty),
        );
        if fa == fb {
            continue;
        }
        n += 1;
        if fa.is_empty() || fb.is_empty() {
            let (side, fields) = if fa.is_empty() {
                (b_name, fb)
            } else {
                (a_name, fa)
            };
            let _ = writeln!(diff, "  only {side}: {object}");
            for (field, value) in fields.iter().filter(|(_, v)| **v != "NULL") {
                let _ = writeln!(diff, "      {field}: {}", indent(value));
            }
            continue;
        }
        let fields: BTreeSet<&str> = fa.keys().chain(fb.keys()).copied().collect();
        for field in fields {
            let (x, y) = (fa.get(field), fb.get(field));
            if x != y {
                let _ = writeln!(
                    diff,
                    "  differs: {object} | {field}\n    {a_name}:\n          {}\n    {b_name}:\n          {}",
                    indent(x.unwrap_or(&"(absent)")),
                    indent(y.unwrap_or(&"(absent)"))
                );
            }
        }
    }
    assert!(
        n == 0,
        "the extension's SQL objects {a_name} differ from those {b_name} ({n} objects differ):\n{diff}"
    );
}
