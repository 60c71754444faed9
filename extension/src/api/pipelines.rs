//! Creating, changing and dropping pipelines: a folder into a table of the user's choosing.
//!
//! These functions run as their caller (not SECURITY DEFINER), with `search_path` pinned to
//! `pg_catalog, pg_temp` like every function of the extension (the target is a `regclass`
//! argument, resolved by the caller's search_path before the call): the caller is the
//! pipeline's owner, whose privileges insert the rows, and must be a superuser or a member of
//! ecommerce_ingest_admin. Everything is checked as the caller (the target and its INSERT
//! privilege, the folders against `ecommerce_ingest.allowed_roots` for a non-superuser); only
//! the catalog row is then written as the extension's owner, with `search_path` pinned.

use crate::pipeline::check_under_roots;
use crate::settings;
use crate::shared;
use ingest_core::options::{merge_options, parse_options, PipelineOptions};
use pgrx::prelude::*;
use pgrx::JsonB;
use std::path::Path;

fn refuse(code: PgSqlErrorCode, msg: String, hint: Option<&str>) -> ! {
    let mut r = pgrx::pg_sys::panic::ErrorReport::new(code, msg, "ecommerce_ingest::api");
    if let Some(h) = hint {
        r = r.set_hint(h);
    }
    r.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// The caller, and whether it is a superuser. Refuses anyone who is neither a superuser nor a
/// member of ecommerce_ingest_admin.
fn caller() -> (pg_sys::Oid, bool) {
    // SAFETY: catalog lookups on the backend's own thread inside a transaction.
    unsafe {
        let me = pg_sys::GetUserId();
        if pg_sys::superuser_arg(me) {
            return (me, true);
        }
        let admin = pg_sys::get_role_oid(c"ecommerce_ingest_admin".as_ptr(), true);
        if admin == pg_sys::InvalidOid || !pg_sys::has_privs_of_role(me, admin) {
            refuse(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "only superusers and members of ecommerce_ingest_admin manage pipelines".into(),
                None,
            );
        }
        (me, false)
    }
}

/// The extension's owner (a superuser: trust.rs), who writes the catalog rows.
fn extension_owner() -> pg_sys::Oid {
    Spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'ecommerce_ingest'",
    )
    .ok()
    .flatten()
    .unwrap_or(pg_sys::BOOTSTRAP_SUPERUSERID.into())
}

/// Runs `f` (catalog writes) as the extension's owner with `search_path` pinned.
fn as_extension<R>(f: impl FnOnce() -> R) -> R {
    crate::restricted::as_owner(extension_owner(), "pg_catalog, pg_temp", f)
}

/// The target (a `regclass` argument: resolved with the caller's search_path before the call):
/// a table, partitioned table or view the caller may INSERT into (a view's rows go in through
/// the planner: its INSTEAD OF triggers or its own updatability); with a transform, its own
/// privileges are checked by PostgreSQL when it runs as the owner.
fn check_target(target: pg_sys::Oid, who: pg_sys::Oid, transform: bool) -> (pg_sys::Oid, String) {
    let kinds = "{r,p,v}";
    // (No row: the target is of another kind, refused below.)
    let found = Spi::connect(|c| {
        let rows = c.select(
            "SELECT c.oid, c.oid::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_class c
              WHERE c.oid OPERATOR(pg_catalog.=) $1
                AND c.relkind OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.char[])",
            None,
            &[target.into(), kinds.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>((None, None));
        }
        let r = rows.first();
        Ok((r.get::<pg_sys::Oid>(1)?, r.get::<String>(2)?))
    })
    .unwrap_or_else(|e| error!("{e}"));
    let (Some(oid), Some(name)) = found else {
        refuse(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            "the target is not a table, partitioned table or view".to_string(),
            Some("With a transform, the target only shapes the staging table: name a table or view, and let the transform write where it should."),
        );
    };
    if transform {
        return (oid, name);
    }
    // A view must take INSERTs (INSTEAD OF INSERT triggers, or a simple updatable view).
    let insertable = Spi::get_one_with_args::<i32>(
        "SELECT pg_catalog.pg_relation_is_updatable($1::pg_catalog.regclass, true)",
        &[oid.into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .unwrap_or(0);
    // Bit 8: INSERT (as in information_schema.views.is_insertable_into).
    if insertable & 8 == 0 {
        refuse(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{name} does not take INSERTs: it is a view without INSTEAD OF INSERT triggers that PostgreSQL cannot update by itself"),
            Some("Give it an INSTEAD OF INSERT trigger, or name its base table, or write into it with a transform."),
        );
    }
    // SAFETY: an ACL check by oids, on the backend's own thread inside a transaction.
    let ok = unsafe { pg_sys::pg_class_aclcheck(oid, who, pg_sys::ACL_INSERT as pg_sys::AclMode) }
        == pg_sys::AclResult::ACLCHECK_OK;
    if !ok {
        refuse(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("the pipeline's owner has no INSERT privilege on {name}: its rows are inserted with the owner's privileges"),
            None,
        );
    }
    (oid, name)
}

fn parse(format: &str, options: &str) -> PipelineOptions {
    parse_options(format, options).unwrap_or_else(|e| {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("pipeline options: {e}"),
            None,
        )
    })
}

/// A non-superuser may only name folders inside `ecommerce_ingest.allowed_roots`.
fn check_folders(superuser: bool, input_dir: &str, o: &PipelineOptions) {
    let input = Path::new(input_dir);
    if !input.is_absolute() {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("input_dir {input_dir:?} must be an absolute path"),
            None,
        );
    }
    if superuser {
        return;
    }
    let roots = settings::allowed_roots();
    let s = &o.settings;
    let archive = s
        .archive_dir
        .clone()
        .unwrap_or_else(|| format!("{input_dir}/archive"));
    let failed = s
        .failed_dir
        .clone()
        .unwrap_or_else(|| format!("{input_dir}/failed"));
    for (what, dir) in [
        ("input_dir", input_dir.to_string()),
        ("archive_dir", archive),
        ("failed_dir", failed),
    ] {
        if let Err(e) = check_under_roots(what, Path::new(&dir), &roots) {
            refuse(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                e,
                Some("A superuser sets ecommerce_ingest.allowed_roots (postgresql.conf or ALTER SYSTEM)."),
            );
        }
    }
}

/// A pipeline's input folder is its own: no other pipeline (the events pipeline included) reads
/// it, moves files into it, or has it read its archive or failed folder. The catalog is locked
/// against other creations and changes until this transaction ends, so two at once cannot both
/// take one folder. (The worker checks again at every trigger: folders change and links move.)
fn check_not_shared(name: &str, input_dir: &str, o: &PipelineOptions) {
    let mine = ecommerce_events::folders::Folders::of_pipeline(input_dir, &o.settings);
    let others = as_extension(|| {
        Spi::connect_mut(|c| {
            c.update(
                "LOCK TABLE public.ingest_pipelines IN SHARE ROW EXCLUSIVE MODE",
                None,
                &[],
            )?;
            crate::pipeline::neighbours(c, name)
        })
    })
    .unwrap_or_else(|e| error!("{e}"));
    if let Err(e) = ecommerce_events::folders::check_not_shared(&mine, &others) {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("pipeline {name:?}: {e}"),
            Some("Give each pipeline an input folder of its own; archive and failed folders may be shared."),
        );
    }
}

/// Declared staging columns (`batch_columns`): only with a transform, every type resolved
/// (with the caller's search_path) and usable by the owner. Returns the options text with the
/// types spelled schema-qualified, as the worker will resolve them.
fn check_batch_columns(
    name: &str,
    o: &PipelineOptions,
    options_text: String,
    owner: pg_sys::Oid,
    transform: bool,
) -> String {
    let Some(declared) = &o.batch_columns else {
        return options_text;
    };
    let fail = |m: String| -> ! {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("pipeline {name:?}: {m}"),
            None,
        )
    };
    if !transform {
        fail("batch_columns declares the staging table a transform reads ($batch): without a transform the rows go into the target as its own columns".into());
    }
    let cols = crate::staged_shape::resolve(declared).unwrap_or_else(|e| fail(e));
    if let Some(t) = crate::staged_shape::first_unusable(&cols, owner) {
        refuse(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("pipeline {name:?}: batch_columns: the pipeline's owner has no USAGE privilege on type {t}"),
            None,
        );
    }
    crate::staged_shape::normalized_options(&options_text, &cols)
}

/// What can be checked of the options against the target's columns (or the declared staging
/// columns) before any file: a header-less file's positions, a de-duplication key (a unique
/// index, and no transform).
fn check_columns(name: &str, o: &PipelineOptions, target: pg_sys::Oid, transform: bool) {
    let cols = match &o.batch_columns {
        Some(declared) => crate::staged_shape::resolve(declared)
            .map(|c| crate::staged_shape::as_target_columns(&c))
            .unwrap_or_default(),
        None => Spi::connect(|c| crate::pipeline::target_columns(c, target))
            .unwrap_or_else(|e| error!("{e}")),
    };
    if let Err(e) = crate::pipeline::check_static(o, &cols)
        .and_then(|()| crate::pipeline::check_dedup_key(o, &cols, target, transform))
    {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("pipeline {name:?}: {e}"),
            None,
        );
    }
}

/// The options that decide how a file is read are the same in both (the others — folders,
/// patterns, intervals, sizes, processed action — may change at any time).
fn same_reading(a: &PipelineOptions, b: &PipelineOptions) -> bool {
    a.format == b.format
        && a.compression == b.compression
        && a.mapping == b.mapping
        && a.ndjson_encoding == b.ndjson_encoding
        && a.policy == b.policy
        && a.batch_columns == b.batch_columns
}

/// The pipeline's owner, who may alter or drop it (or a superuser, or a member of the owner).
fn require_owner(name: &str, me: pg_sys::Oid, superuser: bool) {
    let owner = crate::one_row::optional(Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT owner::pg_catalog.oid FROM public.ingest_pipelines WHERE pipeline_name OPERATOR(pg_catalog.=) $1",
        &[name.into()],
    ))
    .unwrap_or_else(|e| error!("{e}"));
    let Some(owner) = owner else {
        super::no_such_pipeline(name);
    };
    // SAFETY: a role membership lookup on the backend's own thread inside a transaction.
    if !superuser && !unsafe { pg_sys::has_privs_of_role(me, owner) } {
        refuse(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("only the owner of pipeline {name:?} (or a superuser) may change or drop it"),
            None,
        );
    }
}

/// Creates a pipeline: files matching its pattern in `input_dir` are ingested into `target`.
/// Returns a sentence saying what was created. `target` is a `regclass`: the caller's
/// search_path resolves it when the call is made; inside, the search_path is pinned.
#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION "ingest_create_pipeline"(
	"pipeline_name" TEXT,
	"input_dir" TEXT,
	"target" regclass,
	"format" TEXT DEFAULT 'csv',
	"options" jsonb DEFAULT '{}',
	"transform" TEXT DEFAULT NULL
) RETURNS TEXT
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'ingest_create_pipeline_wrapper';
"#
)]
fn ingest_create_pipeline(
    pipeline_name: Option<&str>,
    input_dir: Option<&str>,
    target: Option<pg_sys::Oid>,
    format: Option<&str>,
    options: Option<JsonB>,
    transform: Option<&str>,
) -> String {
    let (Some(pipeline_name), Some(input_dir), Some(target)) = (pipeline_name, input_dir, target)
    else {
        refuse(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "ingest_create_pipeline: pipeline_name, input_dir and target must not be NULL".into(),
            None,
        );
    };
    let format = format.unwrap_or("csv");
    let options = options.unwrap_or(JsonB(serde_json::json!({})));
    super::control::require_trusted();
    super::control::check_worker_database();
    let (me, superuser) = caller();
    if pipeline_name == settings::EVENTS_PIPELINE
        || pipeline_name.is_empty()
        || pipeline_name.len() > 63
        || !pipeline_name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        || pipeline_name.as_bytes()[0].is_ascii_digit()
    {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_NAME,
            format!("invalid pipeline name {pipeline_name:?}: lower-case letters, digits and '_', starting with a letter or '_', at most 63 characters, not \"events\""),
            None,
        );
    }
    let options_text = serde_json::to_string(&options.0).unwrap_or_else(|_| "{}".into());
    let o = parse(format, &options_text);
    check_folders(superuser, input_dir, &o);
    let transform = transform.filter(|t| !t.trim().is_empty());
    let (target_oid, target_name) = check_target(target, me, transform.is_some());
    let options_text =
        check_batch_columns(pipeline_name, &o, options_text, me, transform.is_some());
    check_columns(pipeline_name, &o, target_oid, transform.is_some());
    check_not_shared(pipeline_name, input_dir, &o);
    let count = Spi::get_one::<i64>("SELECT pg_catalog.count(*) FROM public.ingest_pipelines")
        .ok()
        .flatten()
        .unwrap_or(0);
    if count as usize >= shared::MAX_PIPELINES - 1 {
        refuse(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "at most {} pipelines besides events",
                shared::MAX_PIPELINES - 1
            ),
            None,
        );
    }
    let role_name = Spi::get_one_with_args::<String>(
        "SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) $1",
        &[me.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    let inserted = as_extension(|| {
        crate::one_row::optional(Spi::get_one_with_args::<bool>(
            "INSERT INTO public.ingest_pipelines (pipeline_name, owner, target, input_dir, format, options, changed_by, transform)
             VALUES ($1, $2::pg_catalog.oid::pg_catalog.regrole, $3::pg_catalog.oid::pg_catalog.regclass, $4, $5, $6::pg_catalog.jsonb, $7, $8)
             ON CONFLICT (pipeline_name) DO NOTHING RETURNING true",
            &[
                pipeline_name.into(),
                me.into(),
                target_oid.into(),
                input_dir.into(),
                o.format_name.into(),
                options_text.as_str().into(),
                role_name.into(),
                transform.into(),
            ],
        ))
    })
    .unwrap_or_else(|e| error!("{e}"));
    if inserted != Some(true) {
        refuse(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("pipeline {pipeline_name:?} already exists"),
            Some("ingest_alter_pipeline() changes it; ingest_drop_pipeline() drops it."),
        );
    }
    shared::wake_pipeline_at_commit(pipeline_name);
    format!(
        "pipeline {pipeline_name} created: {} files in {input_dir} into {target_name}",
        o.format_name
    )
}

/// Changes a pipeline's folder, options and/or transform (`options` is merged into the
/// current ones, a key set to null goes back to its default; `transform` replaces the current
/// one, `''` removes it). Takes effect at the pipeline's next trigger.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_alter_pipeline(
    pipeline_name: &str,
    input_dir: default!(Option<&str>, "NULL"),
    options: default!(Option<JsonB>, "NULL"),
    transform: default!(Option<&str>, "NULL"),
) -> String {
    super::control::require_trusted();
    let (me, superuser) = caller();
    require_owner(pipeline_name, me, superuser);
    // Locked (as the extension's owner: the caller has no UPDATE privilege on the catalog) so
    // that two changes at once do not lose one another's options.
    let row = as_extension(|| {
        Spi::connect_mut(|c| {
            let r = c.update(
                "SELECT input_dir, format, options::pg_catalog.text, transform, target::pg_catalog.oid,
                        owner::pg_catalog.oid
                   FROM public.ingest_pipelines
                  WHERE pipeline_name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
                None,
                &[pipeline_name.into()],
            )?;
            let r = r.first();
            Ok::<_, pgrx::spi::Error>((
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<String>(4)?,
                r.get::<pg_sys::Oid>(5)?.unwrap_or(pg_sys::InvalidOid),
                r.get::<pg_sys::Oid>(6)?.unwrap_or(pg_sys::InvalidOid),
            ))
        })
    })
    .unwrap_or_else(|e| error!("{e}"));
    let (old_dir, format, old_options, old_transform, target_oid, owner) = row;
    let transform = match transform {
        None => old_transform,
        Some(t) if t.trim().is_empty() => None,
        Some(t) => Some(t.to_string()),
    };
    let dir = input_dir
        .map(str::to_string)
        .or(old_dir)
        .unwrap_or_default();
    let old_options = old_options.unwrap_or_else(|| "{}".into());
    let old_options_text = old_options.clone();
    let new_options = match options {
        Some(patch) => {
            let patch = serde_json::to_string(&patch.0).unwrap_or_else(|_| "{}".into());
            merge_options(&old_options, &patch).unwrap_or_else(|e| {
                refuse(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("pipeline options: {e}"),
                    None,
                )
            })
        }
        None => old_options,
    };
    let format = format.unwrap_or_default();
    let o = parse(&format, &new_options);
    check_folders(superuser, &dir, &o);
    // As at creation, against the pipeline's owner (whoever alters it): a transform removed
    // makes the target take the rows itself.
    check_target(target_oid, owner, transform.is_some());
    let new_options =
        check_batch_columns(pipeline_name, &o, new_options, owner, transform.is_some());
    check_columns(pipeline_name, &o, target_oid, transform.is_some());
    check_not_shared(pipeline_name, &dir, &o);
    // How a file is read may change only between files: a half-ingested file resumed with
    // another delimiter, header, mapping or error mode would be read as another file. (The
    // pipeline's row is locked: no chunk of it commits until this change does.)
    let before = parse(&format, &old_options_text);
    if !same_reading(&before, &o) {
        let half: i64 = as_extension(|| {
            Spi::get_one_with_args::<i64>(
                "SELECT pg_catalog.count(*) FROM public.ingest_ledger
                  WHERE pipeline OPERATOR(pg_catalog.=) $1
                    AND status OPERATOR(pg_catalog.=) ANY ('{ingesting,growing}'::pg_catalog.text[])",
                &[pipeline_name.into()],
            )
        })
        .ok()
        .flatten()
        .unwrap_or(0);
        if half > 0 {
            refuse(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("pipeline {pipeline_name:?} has {half} half-ingested files (status ingesting or growing in ingest_files): the options that decide how a file is read (format, quoting, header, columns, mapping, encoding, compression, on_error, dedup_key, batch_columns) may change only when none is"),
                Some("Let them finish (a paused pipeline finishes none), or remove them from the folder (they end failed), then change the options."),
            );
        }
    }
    as_extension(|| {
        Spi::run_with_args(
            "UPDATE public.ingest_pipelines
                SET input_dir = $2, options = $3::pg_catalog.jsonb, transform = $4,
                    changed_at = pg_catalog.now(), changed_by = session_user
              WHERE pipeline_name OPERATOR(pg_catalog.=) $1",
            &[
                pipeline_name.into(),
                dir.as_str().into(),
                new_options.as_str().into(),
                transform.into(),
            ],
        )
    })
    .unwrap_or_else(|e| error!("{e}"));
    shared::wake_pipeline_at_commit(pipeline_name);
    format!("pipeline {pipeline_name} changed: options {new_options}")
}

/// Drops a pipeline and its bookkeeping (ledger, chunks, rejects, batches). The rows it
/// inserted stay in the target table; the files stay in their folders.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn ingest_drop_pipeline(pipeline_name: &str) -> String {
    super::control::require_trusted();
    let (me, superuser) = caller();
    require_owner(pipeline_name, me, superuser);
    // The DELETE waits for a chunk of the pipeline in flight (its worker holds the row FOR KEY
    // SHARE); after it commits, the worker finds no row, writes nothing more and stops.
    let files = as_extension(|| {
        Spi::connect_mut(|c| {
            c.update(
                "DELETE FROM public.ingest_pipelines WHERE pipeline_name OPERATOR(pg_catalog.=) $1",
                None,
                &[pipeline_name.into()],
            )?;
            let n = c
                .update(
                    "WITH l AS (DELETE FROM public.ingest_ledger WHERE pipeline OPERATOR(pg_catalog.=) $1 RETURNING 1)
                     SELECT pg_catalog.count(*) FROM l",
                    None,
                    &[pipeline_name.into()],
                )?
                .first()
                .get_one::<i64>()?
                .unwrap_or(0);
            for t in [
                "ingest_chunks",
                "ingest_rejected",
                "ingest_batch_log",
                "ingest_counters",
            ] {
                let sql = format!(
                    "DELETE FROM public.{t} WHERE pipeline OPERATOR(pg_catalog.=) $1"
                );
                c.update(&sql, None, &[pipeline_name.into()])?;
            }
            Ok::<_, pgrx::spi::Error>(n)
        })
    })
    .unwrap_or_else(|e| error!("{e}"));
    shared::wake_pipeline_at_commit(pipeline_name);
    format!("pipeline {pipeline_name} dropped ({files} files forgotten; the rows it inserted stay)")
}
