//! Asking for a username and a password the way docker does: flags, standard input, or a
//! prompt on the terminal (the password without echo).

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};

use anyhow::{Context as _, bail};

/// The username from `--username`, else a prompt; `--password-stdin` needs the flag, since
/// standard input carries the password.
pub fn username(
    given: Option<String>,
    password_stdin: bool,
    server: &str,
) -> anyhow::Result<String> {
    let name = match given {
        Some(u) => u,
        None if password_stdin => bail!("--password-stdin needs --username"),
        None => {
            if !std::io::stdin().is_terminal() {
                bail!("cannot prompt for a username: stdin is not a terminal (use --username)");
            }
            print!("Username for {server}: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    if name.is_empty() {
        bail!("a username is required");
    }
    Ok(name)
}

/// The password from standard input (`--password-stdin`, one trailing newline dropped) or a
/// prompt without echo.
pub fn password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut p = String::new();
        std::io::stdin()
            .read_to_string(&mut p)
            .context("reading the password from stdin")?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else {
        rpassword::prompt_password("Password: ").context("reading the password")?
    };
    if password.is_empty() {
        bail!("a password is required");
    }
    Ok(password)
}
