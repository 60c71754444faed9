//! Which folders the worker may read from and move files into: never the data directory, a
//! tablespace or the server's configuration folders, and never one folder for two jobs.
//! Pure path logic over paths made canonical by [`canonical`].

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// What a folder is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderRole {
    Input,
    Archive,
    Failed,
}

impl FolderRole {
    /// What the folder is, in a sentence.
    pub fn noun(self) -> &'static str {
        match self {
            FolderRole::Input => "input folder",
            FolderRole::Archive => "archive folder",
            FolderRole::Failed => "failed folder",
        }
    }

    /// The setting that names the folder.
    pub fn setting(self) -> &'static str {
        match self {
            FolderRole::Input => "ecommerce_ingest.input_dir",
            FolderRole::Archive => "ecommerce_ingest.archive_dir",
            FolderRole::Failed => "ecommerce_ingest.failed_dir",
        }
    }
}

/// A folder of the server's own that the worker must never read, move or delete files in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protected {
    DataDirectory(PathBuf),
    Tablespace {
        name: String,
        path: PathBuf,
    },
    /// Where pg_wal really is (it may be a symbolic link out of the data directory).
    Wal(PathBuf),
    /// The folder of postgresql.conf, pg_hba.conf or pg_ident.conf (outside the data
    /// directory on Debian).
    Configuration(PathBuf),
}

impl Protected {
    pub fn path(&self) -> &Path {
        match self {
            Protected::DataDirectory(p)
            | Protected::Wal(p)
            | Protected::Configuration(p)
            | Protected::Tablespace { path: p, .. } => p,
        }
    }
}

impl fmt::Display for Protected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protected::DataDirectory(p) => write!(f, "the data directory {}", p.display()),
            Protected::Tablespace { name, path } => {
                write!(f, "tablespace {name}'s folder {}", path.display())
            }
            Protected::Wal(p) => write!(f, "the WAL folder {}", p.display()),
            Protected::Configuration(p) => {
                write!(f, "the server's configuration folder {}", p.display())
            }
        }
    }
}

/// How a folder overlaps a protected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Is,
    Inside,
    Contains,
}

/// Why the configured folders cannot be used. Nothing is read, moved or deleted meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderError {
    /// The setting is empty (an empty path would mean the data directory).
    NotSet(FolderRole),
    Protected {
        role: FolderRole,
        path: PathBuf,
        overlap: Overlap,
        protected: Protected,
    },
    /// The archive or failed folder is the input folder itself: moved files would be
    /// ingested again, forever.
    SameAsInput { role: FolderRole, path: PathBuf },
    /// One pipeline's input folder is a folder of another pipeline: one would take, move or
    /// delete the other's files (or another owner's rows would go into its target).
    SharedWith {
        role: FolderRole,
        path: PathBuf,
        pipeline: String,
        their_role: FolderRole,
    },
}

impl fmt::Display for FolderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FolderError::NotSet(role) => write!(
                f,
                "{} is not set: set it (in postgresql.conf or with ALTER SYSTEM, then SELECT pg_reload_conf()) to a folder outside the data directory",
                role.setting()
            ),
            FolderError::Protected {
                role,
                path,
                overlap,
                protected,
            } => write!(
                f,
                "{} = {} {} {protected}: the worker never reads, moves or deletes files there; choose a folder outside it",
                role.setting(),
                path.display(),
                match overlap {
                    Overlap::Is => "is",
                    Overlap::Inside => "is inside",
                    Overlap::Contains => "contains",
                }
            ),
            FolderError::SameAsInput { role, path } => write!(
                f,
                "{} = {} is the input folder itself: files moved there would be ingested again; choose another folder (a subfolder of the input folder is fine)",
                role.setting(),
                path.display()
            ),
            FolderError::SharedWith {
                role,
                path,
                pipeline,
                their_role,
            } => write!(
                f,
                "the {} {} is also the {} of pipeline {pipeline:?}: a pipeline's input folder is its own (another pipeline would take, move or delete its files); choose another folder",
                role.noun(),
                path.display(),
                their_role.noun(),
            ),
        }
    }
}

impl std::error::Error for FolderError {}

/// The folders the worker uses, as canonical paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    pub input: PathBuf,
    pub archive: PathBuf,
    pub failed: PathBuf,
}

fn overlap(a: &Path, b: &Path) -> Option<Overlap> {
    if a == b {
        Some(Overlap::Is)
    } else if a.starts_with(b) {
        Some(Overlap::Inside)
    } else if b.starts_with(a) {
        Some(Overlap::Contains)
    } else {
        None
    }
}

/// Checks the folders against the server's own: the input folder must not be, be inside or
/// contain a protected folder; the archive and failed folders neither, and neither may be the
/// input folder. All paths must be canonical (see [`canonical`]).
pub fn check_folders(f: &Folders, protected: &[Protected]) -> Result<(), FolderError> {
    let roles = [
        (FolderRole::Input, &f.input),
        (FolderRole::Archive, &f.archive),
        (FolderRole::Failed, &f.failed),
    ];
    for (role, path) in roles {
        for p in protected {
            if let Some(overlap) = overlap(path, p.path()) {
                return Err(FolderError::Protected {
                    role,
                    path: path.clone(),
                    overlap,
                    protected: p.clone(),
                });
            }
        }
        if role != FolderRole::Input && *path == f.input {
            return Err(FolderError::SameAsInput {
                role,
                path: path.clone(),
            });
        }
    }
    Ok(())
}

/// Another pipeline's folders (canonical), for [`check_not_shared`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub pipeline: String,
    pub folders: Folders,
}

impl Folders {
    /// A pipeline's folders, canonical: its input folder, and its archive and failed folders
    /// (its options', or `archive` and `failed` inside the input folder).
    pub fn of_pipeline(input_dir: &str, s: &ingest_core::PipelineSettings) -> Folders {
        let input = canonical(Path::new(input_dir));
        let dir = |o: &Option<String>, sub: &str| match o {
            Some(d) if !d.trim().is_empty() => canonical(Path::new(d)),
            _ => input.join(sub),
        };
        Folders {
            archive: dir(&s.archive_dir, "archive"),
            failed: dir(&s.failed_dir, "failed"),
            input,
        }
    }

    fn roles(&self) -> [(FolderRole, &PathBuf); 3] {
        [
            (FolderRole::Input, &self.input),
            (FolderRole::Archive, &self.archive),
            (FolderRole::Failed, &self.failed),
        ]
    }
}

/// No two pipelines share an input folder, and no pipeline moves files into another's input
/// folder or reads another's archive or failed folder: a pipeline's input folder is none of
/// the others' folders, and its archive and failed folders are no other's input folder.
/// (Archive and failed folders may be shared: files only arrive there, renamed if a name is
/// taken; a subfolder of another's input folder is another folder, as listings are not
/// recursive.) All paths must be canonical.
pub fn check_not_shared(mine: &Folders, others: &[Neighbour]) -> Result<(), FolderError> {
    for other in others {
        for (role, path) in mine.roles() {
            for (their_role, theirs) in other.folders.roles() {
                let clash = role == FolderRole::Input || their_role == FolderRole::Input;
                if clash && path == theirs {
                    return Err(FolderError::SharedWith {
                        role,
                        path: path.clone(),
                        pipeline: other.pipeline.clone(),
                        their_role,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The canonical form of an absolute path: symbolic links of its longest existing part
/// resolved, then the rest appended with `.` and `..` applied by name. A folder that does not
/// exist yet (an archive folder made on first use) is checked where it will be.
pub fn canonical(p: &Path) -> PathBuf {
    // The longest leading part that exists, component by component.
    let mut existing = PathBuf::new();
    let mut comps = p.components().peekable();
    while let Some(c) = comps.peek() {
        let next = existing.join(c);
        if std::fs::symlink_metadata(&next).is_err() {
            break;
        }
        existing = next;
        comps.next();
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or_else(|_| PathBuf::from("/"));
    let rest: PathBuf = comps.collect();
    push_lexical(&mut out, &rest);
    out
}

fn push_lexical(out: &mut PathBuf, p: &Path) {
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders(input: &str, archive: &str, failed: &str) -> Folders {
        Folders {
            input: input.into(),
            archive: archive.into(),
            failed: failed.into(),
        }
    }

    fn protected() -> Vec<Protected> {
        vec![
            Protected::DataDirectory("/var/lib/pg/data".into()),
            Protected::Tablespace {
                name: "fast".into(),
                path: "/ssd/ts".into(),
            },
            Protected::Configuration("/etc/postgresql/15/main".into()),
        ]
    }

    #[test]
    fn ordinary_folders_pass() {
        let f = folders("/srv/in", "/srv/in/archive", "/srv/in/failed");
        assert_eq!(check_folders(&f, &protected()), Ok(()));
        let f = folders("/srv/in", "/srv/archive", "/srv/archive");
        assert_eq!(check_folders(&f, &protected()), Ok(()));
    }

    #[test]
    fn the_data_directory_itself_inside_it_and_above_it_are_refused() {
        for (input, overlap) in [
            ("/var/lib/pg/data", Overlap::Is),
            ("/var/lib/pg/data/ingest_input", Overlap::Inside),
            ("/var/lib/pg", Overlap::Contains),
            ("/", Overlap::Contains),
        ] {
            let f = folders(input, "/srv/a", "/srv/f");
            match check_folders(&f, &protected()) {
                Err(FolderError::Protected {
                    role: FolderRole::Input,
                    overlap: o,
                    protected: Protected::DataDirectory(_),
                    ..
                }) => assert_eq!(o, overlap, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn archive_and_failed_folders_are_checked_too() {
        let f = folders("/srv/in", "/ssd/ts/x", "/srv/f");
        let e = check_folders(&f, &protected()).unwrap_err();
        assert!(matches!(
            e,
            FolderError::Protected {
                role: FolderRole::Archive,
                protected: Protected::Tablespace { .. },
                ..
            }
        ));
        assert!(
            e.to_string().contains("ecommerce_ingest.archive_dir"),
            "{e}"
        );
        assert!(e.to_string().contains("tablespace fast"), "{e}");
        let f = folders("/srv/in", "/srv/a", "/etc/postgresql/15/main");
        let e = check_folders(&f, &protected()).unwrap_err();
        assert!(matches!(
            e,
            FolderError::Protected {
                role: FolderRole::Failed,
                ..
            }
        ));
    }

    #[test]
    fn an_archive_or_failed_folder_equal_to_the_input_folder_is_refused() {
        let f = folders("/srv/in", "/srv/in", "/srv/in/failed");
        assert_eq!(
            check_folders(&f, &protected()),
            Err(FolderError::SameAsInput {
                role: FolderRole::Archive,
                path: "/srv/in".into()
            })
        );
        let f = folders("/srv/in", "/srv/in/archive", "/srv/in");
        assert!(matches!(
            check_folders(&f, &protected()),
            Err(FolderError::SameAsInput {
                role: FolderRole::Failed,
                ..
            })
        ));
    }

    fn neighbour(pipeline: &str, input: &str, archive: &str, failed: &str) -> Neighbour {
        Neighbour {
            pipeline: pipeline.into(),
            folders: folders(input, archive, failed),
        }
    }

    #[test]
    fn a_pipeline_s_folders_default_to_subfolders_of_its_input_folder() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let input = root.join("in");
        let mut s = ingest_core::PipelineSettings::default();
        let f = Folders::of_pipeline(&format!("{}/x/../in", root.display()), &s);
        assert_eq!(
            f,
            folders_of(&input, &input.join("archive"), &input.join("failed"))
        );
        s.archive_dir = Some(format!("{}/done", root.display()));
        s.failed_dir = Some("  ".into());
        let f = Folders::of_pipeline(&input.display().to_string(), &s);
        assert_eq!(
            f,
            folders_of(&input, &root.join("done"), &input.join("failed"))
        );
    }

    fn folders_of(input: &Path, archive: &Path, failed: &Path) -> Folders {
        Folders {
            input: input.into(),
            archive: archive.into(),
            failed: failed.into(),
        }
    }

    #[test]
    fn a_pipeline_s_input_folder_is_its_own() {
        let others = [
            neighbour(
                "events",
                "/srv/events",
                "/srv/events/archive",
                "/srv/events/failed",
            ),
            neighbour("orders", "/srv/orders", "/srv/done", "/srv/bad"),
        ];
        let mine = |input: &str, archive: &str, failed: &str| {
            check_not_shared(&folders(input, archive, failed), &others)
        };
        // Own folders, a subfolder of another's input, a shared archive or failed folder.
        assert_eq!(
            mine("/srv/stock", "/srv/stock/archive", "/srv/stock/failed"),
            Ok(())
        );
        assert_eq!(mine("/srv/events/stock", "/srv/x/a", "/srv/x/f"), Ok(()));
        assert_eq!(mine("/srv/stock", "/srv/done", "/srv/bad"), Ok(()));
        // Reading another's input, archive or failed folder.
        for (theirs, pipeline, their_role) in [
            ("/srv/events", "events", FolderRole::Input),
            ("/srv/orders", "orders", FolderRole::Input),
            ("/srv/events/archive", "events", FolderRole::Archive),
            ("/srv/bad", "orders", FolderRole::Failed),
        ] {
            assert_eq!(
                mine(theirs, "/srv/stock/archive", "/srv/stock/failed"),
                Err(FolderError::SharedWith {
                    role: FolderRole::Input,
                    path: theirs.into(),
                    pipeline: pipeline.into(),
                    their_role,
                }),
                "{theirs}"
            );
        }
        // Moving files into another's input folder.
        assert_eq!(
            mine("/srv/stock", "/srv/events", "/srv/stock/failed"),
            Err(FolderError::SharedWith {
                role: FolderRole::Archive,
                path: "/srv/events".into(),
                pipeline: "events".into(),
                their_role: FolderRole::Input,
            })
        );
        let e = mine("/srv/stock", "/srv/stock/archive", "/srv/orders").unwrap_err();
        assert!(matches!(
            e,
            FolderError::SharedWith {
                role: FolderRole::Failed,
                their_role: FolderRole::Input,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "the failed folder /srv/orders is also the input folder of pipeline \"orders\": a pipeline's input folder is its own (another pipeline would take, move or delete its files); choose another folder"
        );
    }

    #[test]
    fn messages_name_the_setting_and_what_to_do() {
        let e = FolderError::NotSet(FolderRole::Input).to_string();
        assert!(e.contains("ecommerce_ingest.input_dir is not set"), "{e}");
        let f = folders("/var/lib/pg/data", "/srv/a", "/srv/f");
        let e = check_folders(&f, &protected()).unwrap_err().to_string();
        assert!(e.contains("is the data directory /var/lib/pg/data"), "{e}");
    }

    #[test]
    fn canonical_resolves_symlinks_and_dot_dot() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let real_c = std::fs::canonicalize(&real).unwrap();
        assert_eq!(canonical(&link), real_c);
        // A folder that does not exist yet, below a symbolic link.
        assert_eq!(canonical(&link.join("new/sub")), real_c.join("new/sub"));
        // `..` after a missing part is applied by name.
        assert_eq!(canonical(&link.join("new/../other")), real_c.join("other"));
        assert_eq!(canonical(&real.join("..")), real_c.parent().unwrap());
        // A link to the data directory is the data directory.
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let sneaky = d.path().join("sneaky");
        std::os::unix::fs::symlink(&data, &sneaky).unwrap();
        let f = Folders {
            input: canonical(&sneaky),
            archive: canonical(&sneaky.join("archive")),
            failed: canonical(&sneaky.join("failed")),
        };
        let p = [Protected::DataDirectory(canonical(&data))];
        assert!(matches!(
            check_folders(&f, &p),
            Err(FolderError::Protected {
                overlap: Overlap::Is,
                ..
            })
        ));
    }
}
