//! Checks of settings whose mistakes would otherwise surface late or silently: a `--listen`
//! that cannot be bound (said before anything else about the address), and a `--log-level`
//! that `tracing` would take for a target name and so log nothing at all.

use super::LOG_LEVELS;

/// `--listen` must be HOST:PORT with a port of 0-65535 (checked before anything else is said
/// about the address).
pub(super) fn check_listen(listen: &str) -> anyhow::Result<()> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "listen: {listen:?} is not an address to listen on: {why} (like 127.0.0.1:8080, \
             [::1]:8080, localhost:8080 or :8080 for every interface)"
        )
    };
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = listen
        .rsplit_once(':')
        .ok_or_else(|| bad("it has no :PORT"))?;
    port.parse::<u16>().map_err(|_| {
        bad(&format!(
            "the port {port:?} is not a number from 0 to 65535"
        ))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let hostname = !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if host.parse::<std::net::IpAddr>().is_err() && !hostname {
        return Err(bad(&format!(
            "{host:?} is not an IP address or a host name"
        )));
    }
    Ok(())
}

/// `--log-level` must be a level or `target=level` directives: an unknown word would
/// otherwise be taken for a target and silence every log.
pub(super) fn check_log_filter(filter: &str) -> anyhow::Result<()> {
    let levels = LOG_LEVELS.join(", ");
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None if directive.contains('[') || directive.contains("::") => continue,
            None => directive,
        };
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            anyhow::bail!(
                "log_level: {level:?} (in {filter:?}) is not a level; use one of {levels}, or \
                 target=level directives like info,sluice::delivery=debug"
            );
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log_level: {filter:?}: {e}; levels are {levels}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_listen, check_log_filter};

    #[test]
    fn listen_addresses() {
        for ok in [
            "127.0.0.1:8080",
            "[::1]:0",
            "localhost:9000",
            "0.0.0.0:65535",
            "my-host.lan:80",
        ] {
            check_listen(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = check_listen("127.0.0.1:99999").unwrap_err().to_string();
        assert!(e.contains("not a number from 0 to 65535"), "{e}");
        assert!(check_listen("127.0.0.1").is_err());
        assert!(check_listen("bad host:80").is_err());
    }

    #[test]
    fn log_filters() {
        for ok in [
            "info",
            "WARN",
            "info,sluice::delivery=debug",
            "sluice=trace",
            "off",
        ] {
            check_log_filter(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = check_log_filter("loud").unwrap_err().to_string();
        assert!(
            e.contains("\"loud\" (in \"loud\") is not a level") && e.contains("error, warn, info"),
            "{e}"
        );
        assert!(check_log_filter("info,sluice=chatty").is_err());
    }
}
