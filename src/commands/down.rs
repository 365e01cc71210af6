//! `ddsky down`: graceful teardown of ddsky's own agent.

use super::{Context, Failure};
use crate::exit;
use crate::reconcile::is_managed;
use crate::reference::short_id;
use crate::settings::DownSettings;
use serde::Serialize;

#[derive(Serialize)]
struct DownReport<'a> {
    name: &'a str,
    /// `removed`, or `absent` when there was nothing to do.
    result: &'static str,
    id: Option<String>,
}

pub async fn run(ctx: &Context, args: DownSettings) -> Result<u8, Failure> {
    let engine = ctx.engine().await?;
    let Some(info) = engine.inspect(&ctx.name).await? else {
        let report = DownReport {
            name: &ctx.name,
            result: "absent",
            id: None,
        };
        crate::output::emit(ctx.format, &report, || {
            format!("no agent container named {}; nothing to do", ctx.name)
        });
        return Ok(exit::OK);
    };
    if !is_managed(&info) && !args.force {
        return Err(Failure::Foreign {
            name: ctx.name.clone(),
            image: info.image,
            flag: "--force",
        });
    }
    tracing::info!(
        "stopping agent {} (up to {} before it is killed)",
        ctx.name,
        humantime::format_duration(args.timeout)
    );
    engine.stop(&info.id, args.timeout).await?;
    engine.remove(&info.id).await?;
    let report = DownReport {
        name: &ctx.name,
        result: "removed",
        id: Some(info.id.clone()),
    };
    crate::output::emit(ctx.format, &report, || {
        format!(
            "agent {} ({}) stopped and removed",
            ctx.name,
            short_id(&info.id)
        )
    });
    Ok(exit::OK)
}
