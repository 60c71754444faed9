//! A pipeline of `ingest_pipelines`: its definition as the catalog has it, its target table's
//! columns as the mapping needs them, and the rule on which folders its owner may use.

use ecommerce_events::folders::{Folders, Neighbour};
use ingest_core::mapping::{ColumnKind, TargetColumn};
use ingest_core::options::{parse_options, PipelineOptions};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use std::path::{Path, PathBuf};

/// A pipeline's definition, read by its worker at every trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineDef {
    pub name: String,
    /// The role whose privileges insert the rows (the pipeline's creator).
    pub owner: pg_sys::Oid,
    pub owner_is_superuser: bool,
    pub target: pg_sys::Oid,
    /// The target as `regclass` prints it (for messages).
    pub target_name: String,
    pub input_dir: String,
    pub format: String,
    pub options: PipelineOptions,
    pub paused: bool,
    /// The target's columns, in table order.
    pub columns: Vec<TargetColumn>,
    /// SQL run on each chunk's rows in the staging table (see worker/staging.rs).
    pub transform: Option<String>,
    /// The target is a view (rows go in through its INSTEAD OF triggers, by the planner).
    pub target_is_view: bool,
    /// The target's owner.
    pub target_owner: pg_sys::Oid,
    /// The staging table's declared columns (`batch_columns`, with a transform); `None`: the
    /// staging table is shaped like the target and `columns` are the target's.
    pub batch: Option<Vec<crate::staged_shape::StagedColumn>>,
    /// Citus manages the target (citus.rs): rows go in through the planner, never COPY.
    pub target_in_citus: bool,
}

impl PipelineDef {
    /// The role whose privileges insert the rows (COPY, or the INSERT from the staging table):
    /// the pipeline's owner; for a pipeline a superuser owns, the target's owner, as for the
    /// events pipeline — a table's triggers and defaults never run as a superuser because a
    /// superuser's pipeline writes into it. (A transform runs as the pipeline's owner: it is
    /// the owner's own SQL.)
    pub fn insert_role(&self) -> pg_sys::Oid {
        if self.owner_is_superuser && self.target_owner != pg_sys::InvalidOid {
            self.target_owner
        } else {
            self.owner
        }
    }

    /// The rows go through the staging table and the planner rather than straight in with COPY:
    /// a transform, a de-duplication key, a view, a Citus table (whose rows COPY's internals
    /// would leave in the coordinator's shell), or row-level security for the owner (which COPY
    /// cannot enforce and an INSERT does).
    pub fn staged(&self) -> bool {
        self.transform.is_some()
            || self.options.policy.dedup_key.is_some()
            || self.target_is_view
            || self.target_in_citus
            || owner_under_rls(self)
    }
}

/// Row-level security applies to the role the rows go in as (see
/// [`PipelineDef::insert_role`]; FORCE ROW LEVEL SECURITY makes it apply to a table's owner).
pub fn owner_under_rls(d: &PipelineDef) -> bool {
    // SAFETY: an RLS check by oids, on the backend's own thread inside a transaction.
    unsafe {
        pg_sys::check_enable_rls(d.target, d.insert_role(), true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    }
}

/// The target's columns, with what the mapping needs to know of each: JSON or array (how an
/// NDJSON value is written), required (NOT NULL without a default), insertable (not generated
/// and not an identity GENERATED ALWAYS). Domains count as their base type.
const TARGET_COLUMNS: &str = "
SELECT a.attname::pg_catalog.text,
       CASE WHEN b.typcategory OPERATOR(pg_catalog.=) 'A' THEN 'array'
            WHEN b.oid OPERATOR(pg_catalog.=) ANY (ARRAY['json'::pg_catalog.regtype, 'jsonb'::pg_catalog.regtype]::pg_catalog.oid[]) THEN 'json'
            ELSE 'other' END,
       a.attnotnull AND NOT a.atthasdef AND a.attidentity OPERATOR(pg_catalog.=) '' AND a.attgenerated OPERATOR(pg_catalog.=) '',
       a.attgenerated OPERATOR(pg_catalog.=) '' AND a.attidentity OPERATOR(pg_catalog.<>) 'a'
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
  JOIN pg_catalog.pg_type b ON b.oid OPERATOR(pg_catalog.=) CASE WHEN t.typtype OPERATOR(pg_catalog.=) 'd' THEN t.typbasetype ELSE t.oid END
 WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
 ORDER BY a.attnum";

/// The columns of table `target`.
pub fn target_columns(
    c: &SpiClient<'_>,
    target: pg_sys::Oid,
) -> Result<Vec<TargetColumn>, pgrx::spi::Error> {
    let mut out = Vec::new();
    for r in c.select(TARGET_COLUMNS, None, &[target.into()])? {
        out.push(TargetColumn {
            name: r.get::<String>(1)?.unwrap_or_default(),
            kind: match r.get::<String>(2)?.as_deref() {
                Some("array") => ColumnKind::Array,
                Some("json") => ColumnKind::Json,
                _ => ColumnKind::Other,
            },
            required: r.get::<bool>(3)?.unwrap_or(false),
            insertable: r.get::<bool>(4)?.unwrap_or(true),
        });
    }
    Ok(out)
}

/// Why a pipeline cannot run as defined.
pub type Invalid = String;

/// Reads pipeline `name` (`Ok(None)`: no such pipeline). `Ok(Some(Err(_)))`: it exists but its
/// options no longer parse or its target is gone (the worker says so in its status).
pub fn load(
    c: &SpiClient<'_>,
    name: &str,
) -> Result<Option<Result<PipelineDef, Invalid>>, pgrx::spi::Error> {
    let rows = c.select(crate::worker::sql::PIPELINE_DEF, None, &[name.into()])?;
    if rows.is_empty() {
        return Ok(None);
    }
    let r = rows.first();
    let owner = r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid);
    let target = r.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid);
    let target_name = r.get::<String>(3)?.unwrap_or_default();
    let input_dir = r.get::<String>(4)?.unwrap_or_default();
    let format = r.get::<String>(5)?.unwrap_or_default();
    let options_json = r.get::<String>(6)?.unwrap_or_else(|| "{}".into());
    let paused = r.get::<bool>(7)?.unwrap_or(true);
    let transform = r.get::<String>(8)?.filter(|t| !t.trim().is_empty());
    let target_is_view = r.get::<bool>(9)?.unwrap_or(false);
    let target_owner = r.get::<pg_sys::Oid>(10)?.unwrap_or(pg_sys::InvalidOid);
    let options = match parse_options(&format, &options_json) {
        Ok(o) => o,
        Err(e) => return Ok(Some(Err(format!("pipeline {name:?}: options: {e}")))),
    };
    if target_columns(c, target)?.is_empty() {
        return Ok(Some(Err(format!(
            "pipeline {name:?}: its target table {target_name} no longer exists"
        ))));
    }
    // Files map to the declared staging columns, if any, else to the target's.
    let batch = match &options.batch_columns {
        None => None,
        Some(_) if transform.is_none() => {
            return Ok(Some(Err(format!(
                "pipeline {name:?}: batch_columns needs a transform"
            ))))
        }
        Some(declared) => match crate::staged_shape::resolve(declared) {
            Ok(cols) => {
                // A USAGE privilege revoked since the pipeline was created stops it.
                if let Some(t) = crate::staged_shape::first_unusable(&cols, owner) {
                    return Ok(Some(Err(format!(
                        "pipeline {name:?}: batch_columns: its owner has no USAGE privilege on type {t} (revoked?)"
                    ))));
                }
                Some(cols)
            }
            Err(e) => return Ok(Some(Err(format!("pipeline {name:?}: {e}")))),
        },
    };
    let columns = match &batch {
        Some(cols) => crate::staged_shape::as_target_columns(cols),
        None => target_columns(c, target)?,
    };
    // SAFETY: a catalog lookup by oid on the backend's own thread, inside a transaction.
    let owner_is_superuser = unsafe { pg_sys::superuser_arg(owner) };
    Ok(Some(Ok(PipelineDef {
        name: name.to_string(),
        owner,
        owner_is_superuser,
        target,
        target_name,
        input_dir,
        format,
        options,
        paused,
        columns,
        transform,
        target_is_view,
        target_owner,
        batch,
        target_in_citus: crate::citus::is_citus_table(c, target)?,
    })))
}

/// Every pipeline's folders but `except`'s, the events pipeline's (from its settings) among
/// them when its input folder is set: what `ecommerce_events::folders::check_not_shared` checks
/// a pipeline's folders against.
pub fn neighbours(c: &SpiClient<'_>, except: &str) -> Result<Vec<Neighbour>, pgrx::spi::Error> {
    let mut out = Vec::new();
    let events = crate::settings::Settings::read();
    if !events.input_unset && except != crate::settings::EVENTS_PIPELINE {
        out.push(Neighbour {
            pipeline: crate::settings::EVENTS_PIPELINE.to_string(),
            folders: Folders {
                input: events.input_dir,
                archive: events.archive_dir,
                failed: events.failed_dir,
            },
        });
    }
    for r in c.select(crate::worker::sql::PIPELINE_FOLDERS, None, &[except.into()])? {
        let pipeline = r.get::<String>(1)?.unwrap_or_default();
        let input_dir = r.get::<String>(2)?.unwrap_or_default();
        let format = r.get::<String>(3)?.unwrap_or_default();
        let options = r.get::<String>(4)?.unwrap_or_else(|| "{}".into());
        // Options that no longer parse: its worker stops on them; its input folder still counts.
        let settings = parse_options(&format, &options)
            .map(|o| o.settings)
            .unwrap_or_default();
        out.push(Neighbour {
            folders: Folders::of_pipeline(&input_dir, &settings),
            pipeline,
        });
    }
    Ok(out)
}

/// A folder a non-superuser names must be inside one of `roots` once symbolic links and `..`
/// are resolved (`Err`: why not, for the person who named it).
pub fn check_under_roots(what: &str, folder: &Path, roots: &[PathBuf]) -> Result<(), String> {
    if !folder.is_absolute() {
        return Err(format!("{what} {folder:?} must be an absolute path"));
    }
    let real = ecommerce_events::folders::canonical(folder);
    if roots.iter().any(|r| real.starts_with(r)) {
        return Ok(());
    }
    let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(if shown.is_empty() {
        format!("{what} {folder:?}: only a superuser may create pipelines while ecommerce_ingest.allowed_roots is empty")
    } else if real != folder {
        format!(
            "{what} {folder:?} is {real:?} once symbolic links and '..' are resolved, which is not inside ecommerce_ingest.allowed_roots ({})",
            shown.join(", ")
        )
    } else {
        format!(
            "{what} {folder:?} is not inside ecommerce_ingest.allowed_roots ({})",
            shown.join(", ")
        )
    })
}

/// The pipeline's owner may insert into its target: checked at every trigger and in every
/// chunk's transaction (the worker calls COPY's internals, which check no privilege), so a
/// privilege revoked later stops the pipeline with this reason. (A transform is checked by
/// PostgreSQL itself, as the owner runs it; row-level security sends the rows through the
/// planner, see [`PipelineDef::staged`].)
pub fn owner_may_insert(d: &PipelineDef) -> Result<(), Invalid> {
    if d.transform.is_some() {
        return Ok(());
    }
    // SAFETY: an ACL check by oids, on the backend's own thread inside a transaction.
    let insert_ok = unsafe {
        pg_sys::pg_class_aclcheck(d.target, d.owner, pg_sys::ACL_INSERT as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
    };
    if !insert_ok {
        return Err(format!(
            "pipeline {:?}: its owner has no INSERT privilege on {} (revoked?); nothing is ingested until it is granted again",
            d.name, d.target_name
        ));
    }
    Ok(())
}

/// What can be checked when a pipeline is created, before any file: the positions of a
/// header-less file against the target's columns.
pub fn check_static(o: &PipelineOptions, cols: &[TargetColumn]) -> Result<(), String> {
    match &o.format {
        ingest_core::options::Format::Csv(c) if !c.header => {
            ingest_core::mapping::resolve(None, &o.mapping, cols)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

/// A de-duplication key must be the columns of a unique index (or constraint) of the target,
/// without a predicate or expressions — what `ON CONFLICT (key) DO NOTHING` needs — and is for
/// pipelines without a transform (a transform writes its own `ON CONFLICT`).
pub fn check_dedup_key(
    o: &PipelineOptions,
    cols: &[TargetColumn],
    target: pg_sys::Oid,
    transform: bool,
) -> Result<(), String> {
    let Some(key) = &o.policy.dedup_key else {
        return Ok(());
    };
    if transform {
        return Err(
            "dedup_key is for pipelines without a transform: a transform writes its own ON CONFLICT"
                .into(),
        );
    }
    let mut names = Vec::with_capacity(key.len());
    for k in key.iter() {
        match ingest_core::mapping::find_target(cols, k) {
            Some(i) => names.push(cols[i].name.clone()),
            None => return Err(format!("dedup_key: the target has no column {k:?}")),
        }
    }
    let unique = pgrx::Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
           SELECT 1 FROM pg_catalog.pg_index i
            WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique AND i.indpred IS NULL
              AND i.indexprs IS NULL
              AND (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY a.attname)
                     FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) $1
                      AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::pg_catalog.int2[]))
                  OPERATOR(pg_catalog.=)
                  (SELECT pg_catalog.array_agg(c ORDER BY c) FROM pg_catalog.unnest($2::pg_catalog.text[]) c))",
        &[target.into(), names.clone().into()],
    )
    .map_err(|e| e.to_string())?;
    if unique != Some(true) {
        return Err(format!(
            "dedup_key ({}) is not the column list of a unique index or constraint of the target (without a predicate or expressions): ON CONFLICT needs one",
            names.join(", ")
        ));
    }
    Ok(())
}
