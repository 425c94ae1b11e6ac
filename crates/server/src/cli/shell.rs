//! `sluice completions SHELL` and `sluice man`: shell completions (clap_complete) and man pages
//! (clap_mangen) generated from the same command-line definition the binary parses, so they
//! cannot drift from it. `scripts/install` writes them next to the installed binary.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write one page per command (sluice.1, sluice-serve.1, sluice-queue-create.1, ...) into
    /// this directory instead of printing sluice(1).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Print the completion script of `cmd` for `shell`.
pub fn completions(mut cmd: clap::Command, a: CompletionsArgs) -> anyhow::Result<()> {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sluice", &mut buf);
    write_stdout(&buf)
}

/// Print sluice(1), or write every command's page into `--dir`.
pub fn man(cmd: clap::Command, a: ManArgs) -> anyhow::Result<()> {
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            write_stdout(&buf)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)?;
    o.flush()?;
    Ok(())
}
