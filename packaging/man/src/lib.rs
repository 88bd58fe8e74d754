//! Man pages for Carapace's commands, rendered from the same clap
//! definitions that answer `--help`, so the two cannot drift apart. Each
//! binary has a hidden `man DIR` verb (as `crio man` does) that
//! hack/build-deb.sh calls to put the pages in the package.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Section 8: system administration commands, where Debian puts daemons
/// and the runtimes beside them (runc(8), containerd(8)).
const SECTION: &str = "8";

/// Writes `NAME.8` for `cmd` and `NAME-SUB.8` for each visible subcommand,
/// recursively, into `dir`. Returns the paths written.
pub fn write_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut cmd = cmd;
    cmd.build();
    write_one(&cmd, cmd.get_name().to_string(), dir, &mut written)?;
    Ok(written)
}

fn write_one(
    cmd: &clap::Command,
    name: String,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    // The page's title is the full command name (carapace-image-pull), as
    // git and cargo name their subcommand pages.
    let page = cmd
        .clone()
        .name(name.clone())
        .bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.{SECTION}"));
    let mut out = BufWriter::new(File::create(&path)?);
    clap_mangen::Man::new(page)
        .section(SECTION)
        .manual("Carapace")
        .render(&mut out)?;
    out.flush()?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_one(sub, format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> clap::Command {
        clap::Command::new("demo")
            .about("A demo daemon")
            .arg(clap::Arg::new("config").long("config").help("Config file"))
            .subcommand(
                clap::Command::new("image")
                    .about("Images")
                    .subcommand(clap::Command::new("pull").about("Pull an image")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn every_visible_subcommand_gets_a_page_that_names_its_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_pages(demo(), dir.path()).expect("write");
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["demo.8", "demo-image.8", "demo-image-pull.8"]);
        let top = std::fs::read_to_string(dir.path().join("demo.8")).expect("read");
        assert!(top.contains(".TH demo 8"), "{top}");
        assert!(
            top.contains("config") && top.contains("Config file"),
            "{top}"
        );
        let pull = std::fs::read_to_string(dir.path().join("demo-image-pull.8")).expect("read");
        assert!(pull.contains("Pull an image"), "{pull}");
        assert!(!dir.path().join("demo-secret.8").exists());
    }
}
