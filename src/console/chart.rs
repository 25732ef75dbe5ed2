//! Charts drawn on the server as SVG: MRR over time and the MRR bridge as a waterfall.
//! No script, no library to embed; they print and read without JavaScript.

use maud::{html, Markup};

use super::pages::money;

const W: f64 = 720.0;
const H: f64 = 240.0;
const PAD_L: f64 = 96.0;
const PAD_B: f64 = 28.0;
const PAD_T: f64 = 12.0;

/// `v` in `lo..hi` as a y coordinate (top is `hi`).
fn y(v: f64, lo: f64, hi: f64) -> f64 {
    let span = (hi - lo).max(1.0);
    PAD_T + (H - PAD_T - PAD_B) * (1.0 - (v - lo) / span)
}

/// A line of `(label, minor units)` points, with its axis in `currency`.
pub fn line(points: &[(String, i64)], currency: &str) -> Markup {
    let hi = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let lo = 0.0;
    let n = points.len().max(2) as f64;
    let x = |i: usize| PAD_L + (W - PAD_L - 8.0) * i as f64 / (n - 1.0);
    let path: String = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            format!(
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(i),
                y(*v as f64, lo, hi)
            )
        })
        .collect();
    let last = points.last();
    let summary = format!(
        "MRR from {} to {}: {}",
        points.first().map_or("", |p| p.0.as_str()),
        last.map_or("", |p| p.0.as_str()),
        points
            .iter()
            .map(|(l, v)| format!("{l} {}", money(*v, currency)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let every = (points.len() / 8).max(1);
    html! {
        figure.chart {
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(summary) {
                @for t in [0.0, 0.5, 1.0] {
                    @let v = lo + (hi - lo) * t;
                    line.grid x1=(PAD_L) x2=(W - 8.0) y1=(y(v, lo, hi)) y2=(y(v, lo, hi)) {}
                    text.axis x=(PAD_L - 6.0) y=(y(v, lo, hi) + 4.0) text-anchor="end" { (money(v as i64, currency)) }
                }
                path.series d=(path) {}
                @for (i, (label, v)) in points.iter().enumerate() {
                    circle.dot cx=(x(i)) cy=(y(*v as f64, lo, hi)) r="3" { title { (label) ": " (money(*v, currency)) } }
                    @if i % every == 0 || i + 1 == points.len() {
                        text.axis x=(x(i)) y=(H - 8.0) text-anchor="middle" { (label) }
                    }
                }
            }
        }
    }
}

/// A waterfall: the start bar, each movement floating from the running total (up
/// green, down red), and the end bar.
pub fn waterfall(steps: &[(&str, i64)], end: i64, currency: &str) -> Markup {
    let mut running = 0i64;
    let mut bars: Vec<(&str, i64, i64, &str)> = Vec::new();
    for (i, (label, delta)) in steps.iter().enumerate() {
        if i == 0 {
            bars.push((label, 0, *delta, "total"));
            running = *delta;
        } else {
            let from = running;
            running = running.saturating_add(*delta);
            bars.push((
                label,
                from,
                running,
                if *delta >= 0 { "up" } else { "down" },
            ));
        }
    }
    bars.push(("end", 0, end, "total"));
    let hi = bars.iter().map(|b| b.1.max(b.2)).max().unwrap_or(1).max(1) as f64;
    let lo = bars.iter().map(|b| b.1.min(b.2)).min().unwrap_or(0).min(0) as f64;
    let slot = (W - PAD_L - 8.0) / bars.len() as f64;
    let summary: String = steps
        .iter()
        .map(|(l, d)| format!("{l} {}", money(*d, currency)))
        .chain(std::iter::once(format!("end {}", money(end, currency))))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        figure.chart {
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label={"MRR bridge: " (summary)} {
                line.grid x1=(PAD_L) x2=(W - 8.0) y1=(y(0.0, lo, hi)) y2=(y(0.0, lo, hi)) {}
                text.axis x=(PAD_L - 6.0) y=(y(hi, lo, hi) + 4.0) text-anchor="end" { (money(hi as i64, currency)) }
                @for (i, (label, from, to, class)) in bars.iter().enumerate() {
                    @let top = y((*from).max(*to) as f64, lo, hi);
                    @let bottom = y((*from).min(*to) as f64, lo, hi);
                    @let bx = PAD_L + slot * i as f64 + slot * 0.15;
                    rect class={"bar " (class)} x=(bx) y=(top) width=(slot * 0.7) height=((bottom - top).max(1.0)) {
                        title { (label) ": " (money(to - from, currency)) }
                    }
                    text.axis x=(bx + slot * 0.35) y=(H - 8.0) text-anchor="middle" { (label) }
                }
            }
            figcaption.small.muted { (summary) }
        }
    }
}
