//! `ddsky logs`: the agent container's logs through the Docker API.

use super::{Context, Failure};
use crate::exit;
use crate::settings::LogsSettings;
use futures_util::StreamExt;
use std::io::Write;

pub async fn run(ctx: &Context, args: LogsSettings) -> Result<u8, Failure> {
    let engine = ctx.engine().await?;
    let Some(info) = engine.inspect(&ctx.name).await? else {
        return Err(Failure::NoAgent {
            name: ctx.name.clone(),
        });
    };
    let since = args.since.map(|d| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i32::try_from(now.saturating_sub(d).as_secs()).unwrap_or(0)
    });
    let mut stream = Box::pin(engine.logs(&info.id, args.tail, args.follow, since));
    let mut stdout = std::io::stdout().lock();
    loop {
        // Ctrl-C is how one ends `logs -f`: a clean end, not an error.
        let next = tokio::select! {
            next = stream.next() => next,
            _ = ctx.interrupt.signalled() => break,
        };
        let Some(chunk) = next else { break };
        let text = crate::redact::redact(&chunk?);
        if let Err(e) = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            tracing::warn!("cannot write the logs: {e}");
            break;
        }
    }
    Ok(exit::OK)
}
