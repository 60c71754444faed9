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
