//! Plain aligned tables for `draas ops` output (the `--json` form prints the structs instead).

use draas_bus::admin::{
    ActionReport, ConsumerRow, DeadLetter, DlqPage, Payload, PendingPage, StreamsReport,
};

use super::ui::human_ms;

/// Rows of cells printed with columns padded to their widest cell.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            println!("{}", line.join("  ").trim_end());
        }
    }
}

fn opt_ms(ms: Option<u64>) -> String {
    ms.map_or("-".into(), human_ms)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// Kind, instance and correlation id of a payload, or what is wrong with it.
fn payload_cells(p: &Payload) -> [String; 3] {
    match p {
        Payload::Command {
            kind,
            instance_id,
            correlation_id,
            ..
        } => [kind.clone(), opt(*instance_id), correlation_id.to_string()],
        Payload::Undecodable { error } => ["UNDECODABLE".into(), "-".into(), error.clone()],
        Payload::Missing => ["(body gone)".into(), "-".into(), "-".into()],
    }
}

pub fn streams(report: &StreamsReport) {
    let mut t = Table::new(&[
        "PLATFORM",
        "STREAM",
        "LENGTH",
        "CONSUMERS",
        "PENDING",
        "OLDEST",
        "AGE",
        "IDLE",
        "LAG",
        "WORKERS",
        "DLQ",
    ]);
    for p in &report.platforms {
        for s in &p.streams {
            let name = s
                .node
                .as_ref()
                .map_or("platform".into(), |n| format!("node {n}"));
            let oldest = s.oldest_pending.as_ref();
            t.row(vec![
                p.platform.to_string(),
                name,
                s.length.to_string(),
                opt(s.group.as_ref().map(|g| g.consumers)),
                opt(s.group.as_ref().map(|g| g.pending)),
                opt(oldest.map(|o| o.id.clone())),
                opt_ms(oldest.and_then(|o| o.age_ms)),
                opt_ms(oldest.map(|o| o.idle_ms)),
                opt(s.group.as_ref().and_then(|g| g.lag)),
                p.live_workers.to_string(),
                p.dlq_length.to_string(),
            ]);
        }
    }
    t.print();
}

pub fn pending(page: &PendingPage) {
    println!("stream {}", page.stream);
    let mut t = Table::new(&[
        "ID",
        "CONSUMER",
        "LIVE",
        "IDLE",
        "DELIVERIES",
        "KIND",
        "INSTANCE",
        "CORRELATION",
        "OPERATION",
    ]);
    for r in &page.rows {
        let [kind, instance, correlation] = payload_cells(&r.payload);
        t.row(vec![
            r.id.clone(),
            r.consumer.clone(),
            if r.consumer_live { "yes" } else { "no" }.into(),
            human_ms(r.idle_ms),
            r.deliveries.to_string(),
            kind,
            instance,
            correlation,
            opt(r.operation.clone()),
        ]);
    }
    t.print();
    match &page.next {
        Some(next) => println!("more: --after {next}"),
        None => println!("{} pending entries shown; end of list", page.rows.len()),
    }
}

pub fn report(r: &ActionReport) {
    let mode = if r.dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    println!(
        "{} on {}: {} matched, {} changed, {} skipped{mode}",
        r.action, r.stream, r.matched, r.changed, r.skipped
    );
    for s in &r.skip_reasons {
        println!("skipped {}: {}", s.count, s.message);
    }
    if !r.items.is_empty() {
        let mut t = Table::new(&["ID", "OUTCOME", "DETAIL"]);
        for i in &r.items {
            t.row(vec![i.id.clone(), i.outcome.clone(), i.detail.clone()]);
        }
        t.print();
    }
    if r.items_truncated {
        println!("(only the first {} entries are listed)", r.items.len());
    }
    for note in &r.notes {
        println!("note: {note}");
    }
}

pub fn dlq_list(page: &DlqPage) {
    println!("{}: {} dead letters", page.stream, page.length);
    let mut t = Table::new(&[
        "ID",
        "AGE",
        "KIND",
        "INSTANCE",
        "COMMAND",
        "OPERATION",
        "DELIVERIES",
        "REASON",
    ]);
    for l in &page.letters {
        let [kind, instance, _] = payload_cells(&l.payload);
        t.row(vec![
            l.id.clone(),
            opt_ms(l.age_ms),
            kind,
            instance,
            opt(l.payload.command_id()),
            opt(l.operation.clone()),
            opt(l.deliveries),
            l.reason.clone(),
        ]);
    }
    t.print();
    if let Some(next) = &page.next {
        println!("more: --after {next}");
    }
}

pub fn dlq_show(l: &DeadLetter) {
    let [kind, instance, correlation] = payload_cells(&l.payload);
    let mut t = Table::new(&["FIELD", "VALUE"]);
    for (k, v) in [
        ("id", l.id.clone()),
        ("reason", l.reason.clone()),
        ("from stream", l.stream.clone()),
        ("from entry", l.entry.clone()),
        ("deliveries", opt(l.deliveries)),
        ("age", opt_ms(l.age_ms)),
        ("kind", kind),
        ("instance", instance),
        ("correlation", correlation),
        ("command", opt(l.payload.command_id())),
        ("operation", opt(l.operation.clone())),
    ] {
        t.row(vec![k.to_owned(), v]);
    }
    for (k, v) in l.fields.iter().flatten() {
        t.row(vec![format!("field {k}"), v.clone()]);
    }
    t.print();
    if let Some(env) = &l.envelope {
        println!(
            "envelope:\n{}",
            serde_json::to_string_pretty(env).unwrap_or_default()
        );
    }
}

pub fn consumers(rows: &[ConsumerRow]) {
    let mut t = Table::new(&["STREAM", "CONSUMER", "LIVE", "PENDING", "IDLE", "INACTIVE"]);
    for r in rows {
        let stream = r
            .node
            .as_ref()
            .map_or("platform".into(), |n| format!("node {n}"));
        t.row(vec![
            stream,
            r.consumer.clone(),
            if r.live { "yes" } else { "no" }.into(),
            r.pending.to_string(),
            human_ms(r.idle_ms),
            opt_ms(r.inactive_ms),
        ]);
    }
    t.print();
}

pub fn audit(page: &draas_bus::store::AuditPage) {
    let mut t = Table::new(&[
        "ID",
        "AT",
        "ACTOR",
        "TENANT",
        "METHOD",
        "PATH",
        "STATUS",
        "OPERATION",
    ]);
    for e in &page.items {
        t.row(vec![
            e.id.clone(),
            draas_protocol::Timestamp(e.at).rfc3339(),
            e.actor.clone(),
            opt(e.tenant.clone()),
            e.method.clone(),
            e.path.clone(),
            e.status.to_string(),
            opt(e.operation.clone()),
        ]);
    }
    t.print();
    if let Some(next) = &page.next_cursor {
        println!("more: --cursor {next}");
    }
}
