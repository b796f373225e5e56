//! Man pages and shell completions, generated from the clap definition in
//! `cli.rs` so that they can never drift from `--help`. The packages run these
//! at build time (`ringfence completions SHELL`, `ringfence manpages DIR`;
//! packaging/build-packages.sh).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Section 8: system administration commands and daemons.
const SECTION: &str = "8";

/// The completion script for `shell`. The bash and fish ones also complete
/// the names of rules and services ([`BASH_NAMES`], [`FISH_NAMES`]).
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    // Into memory: clap_complete panics on a failed write (e.g. a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    match shell {
        Shell::Bash => script.extend_from_slice(BASH_NAMES.as_bytes()),
        Shell::Fish => script.extend_from_slice(FISH_NAMES.as_bytes()),
        _ => {}
    }
    script
}

/// Names known only at run time, asked of ringfence itself: the rules of the
/// managed drop-in after `rule delete|enable|disable`, the services after
/// `--services`; everything else goes to clap's static completion. (clap's
/// dynamic completion is behind the unstable-dynamic feature of clap_complete
/// 4.6: not for a firewall's packages.)
const BASH_NAMES: &str = r#"
_ringfence_names() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} rf=${COMP_WORDS[0]}
    if [[ $prev == --services ]]; then
        COMPREPLY=($(compgen -W "$("$rf" show services --names 2>/dev/null)" -- "$cur"))
        return 0
    fi
    if [[ ${COMP_WORDS[1]} == rule && $COMP_CWORD -eq 3 ]]; then
        case ${COMP_WORDS[2]} in
            delete | enable | disable)
                COMPREPLY=($(compgen -W "$("$rf" rule list --names 2>/dev/null)" -- "$cur"))
                return 0 ;;
        esac
    fi
    _ringfence "$@"
}
complete -F _ringfence_names -o bashdefault -o default ringfence
"#;

/// The same names for fish, beside clap's completions of the same commands
/// (fish adds up the candidates of every matching `complete`).
const FISH_NAMES: &str = r#"
complete -c ringfence -n "__fish_ringfence_using_subcommand rule; and __fish_seen_subcommand_from delete enable disable" -f -a "(ringfence rule list --names 2>/dev/null)"
complete -c ringfence -n "__fish_ringfence_using_subcommand rule; and __fish_seen_subcommand_from add" -l services -x -a "(ringfence show services --names 2>/dev/null)"
"#;

/// Writes ringfence.8 and one page per subcommand (ringfence-daemon.8, ...)
/// into `dir`, none for `help` or a hidden subcommand; returns the paths written.
pub fn manpages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building propagates the global options (--socket) into the subcommands and
    // names them `ringfence-SUB`, the name of their page.
    cmd.build();
    let mut written = Vec::new();
    write_page(&cmd, dir, &mut written).with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir, &mut written).with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    }
    Ok(written)
}

fn write_page(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    // No date: the pages of one version are byte-identical whenever they are built.
    let man = clap_mangen::Man::new(cmd.clone()).section(SECTION).manual("Ringfence");
    let path = dir.join(man.get_filename());
    let mut out = BufWriter::new(File::create(&path)?);
    man.render(&mut out)?;
    out.flush()?;
    written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_subcommand() {
        let dir = std::env::temp_dir().join(format!("ringfence-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut names: Vec<String> =
            manpages(&dir).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        names.sort();
        let main = std::fs::read_to_string(dir.join("ringfence.8")).unwrap();
        let daemon = std::fs::read_to_string(dir.join("ringfence-daemon.8")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(names.contains(&"ringfence.8".to_string()), "{names:?}");
        assert!(names.contains(&"ringfence-daemon.8".to_string()), "{names:?}");
        assert!(names.contains(&"ringfence-completions.8".to_string()), "{names:?}");
        assert!(names.contains(&"ringfence-manpages.8".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        assert!(main.contains(".TH ringfence 8"), "{main}");
        // The global option reaches the subcommands' pages.
        assert!(daemon.contains("socket"), "{daemon}");
        assert!(daemon.contains("flush\\-on\\-exit"), "{daemon}");
    }

    #[test]
    fn completions_know_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(completions(shell)).unwrap();
            assert!(text.contains("daemon") && text.contains("explain"), "{shell}: {text}");
        }
    }

    #[test]
    fn bash_completes_names_with_commands_that_exist() {
        let text = String::from_utf8(completions(Shell::Bash)).unwrap();
        assert!(text.trim_end().ends_with("complete -F _ringfence_names -o bashdefault -o default ringfence"));
        for asked in ["show services --names", "rule list --names", "rule delete x", "rule disable x"] {
            let words = std::iter::once("ringfence").chain(asked.split(' '));
            assert!(<Cli as clap::Parser>::try_parse_from(words).is_ok(), "{asked}");
        }
        assert!(text.contains("\"$rf\" show services --names") && text.contains("\"$rf\" rule list --names"));
        let fish = String::from_utf8(completions(Shell::Fish)).unwrap();
        // The condition function is clap's, defined earlier in the same script.
        assert!(fish.contains("function __fish_ringfence_using_subcommand"), "{fish}");
        assert!(fish.contains("-a \"(ringfence rule list --names 2>/dev/null)\""));
    }
}
