//! The widget's public page (R9, issue 25): drawn with maud, whose `html!` escapes every value,
//! when the widget's settings or media change, and stored in the widget's document. Four
//! layouts — grid, slider, masonry, list — in one small inline style sheet that is the same
//! for every page, and one small inline script that tells an embedding page the widget's
//! height. Both are constants, so the page's Content-Security-Policy names them by hash
//! ([`STYLE`], [`SCRIPT`]).

use lightwidget_domain::event::{Layout, MediaItem, MediaKind, WidgetSettings};
use lightwidget_domain::WidgetId;
use maud::{html, PreEscaped, DOCTYPE};

/// The style sheet of every widget page. `--c` is the widget's columns (the `c<N>` class);
/// narrow screens show at most three, then two.
pub const STYLE: &str = "\
*{box-sizing:border-box}html{scrollbar-gutter:stable}\
body{margin:0;font:15px/1.4 system-ui,-apple-system,sans-serif;color:#1a1a1a;background:#fff}\
.lw{padding:8px}.lw h1{font-size:1.05rem;margin:0 0 8px}\
.lw ul{list-style:none;margin:0;padding:0;gap:6px}\
.lw li{position:relative;margin:0}\
.lw a{display:block;color:inherit;text-decoration:none}\
.lw a:focus-visible{outline:3px solid #c2410c;outline-offset:2px}\
.lw img{display:block;width:100%;height:auto;background:#e5e5e5}\
.lw .m{position:absolute;top:6px;right:6px;background:rgba(0,0,0,.7);color:#fff;border-radius:4px;padding:0 6px;font-size:13px}\
.v{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}\
.c1{--c:1}.c2{--c:2}.c3{--c:3}.c4{--c:4}.c5{--c:5}.c6{--c:6}.c7{--c:7}.c8{--c:8}.c9{--c:9}.c10{--c:10}.c11{--c:11}.c12{--c:12}\
@media(max-width:800px){.c4,.c5,.c6,.c7,.c8,.c9,.c10,.c11,.c12{--c:3}}\
@media(max-width:480px){.c3,.c4,.c5,.c6,.c7,.c8,.c9,.c10,.c11,.c12{--c:2}}\
.grid ul{display:grid;grid-template-columns:repeat(var(--c),minmax(0,1fr))}\
.grid img{aspect-ratio:1;object-fit:cover}\
.masonry ul{column-count:var(--c);column-gap:6px}\
.masonry li{break-inside:avoid;margin-bottom:6px}\
.slider ul{display:grid;grid-auto-flow:column;grid-auto-columns:calc((100% - (var(--c) - 1)*6px)/var(--c));\
overflow-x:auto;overflow-y:hidden;scroll-snap-type:x mandatory;overscroll-behavior-x:contain}\
.slider li{scroll-snap-align:start}.slider img{aspect-ratio:1;object-fit:cover}\
.list li{margin-bottom:8px}.list a{display:flex;gap:12px;align-items:center}\
.list img{width:96px;flex:none;aspect-ratio:1;object-fit:cover}";

/// The script of every widget page: when the page is embedded, it posts its height to the
/// page around it (`{"lightwidget": "height", "height": …}`), at load and on each resize.
pub const SCRIPT: &str = "(function(){if(parent===window)return;\
function s(){parent.postMessage({lightwidget:'height',height:document.documentElement.scrollHeight},'*')}\
addEventListener('load',s);if(window.ResizeObserver)new ResizeObserver(s).observe(document.body);s()})()";

/// The size given to an image whose source did not tell it: Instagram's square.
const SQUARE: u32 = 640;

fn layout_class(l: Layout) -> &'static str {
    match l {
        Layout::Grid => "grid",
        Layout::Slider => "slider",
        Layout::Masonry => "masonry",
        Layout::List => "list",
    }
}

/// The page of a widget with its cached media.
pub fn render(widget_id: WidgetId, s: &WidgetSettings, media: &[MediaItem]) -> String {
    let layout = layout_class(s.layout);
    let columns = if s.layout == Layout::List {
        1
    } else {
        s.columns.clamp(1, 12)
    };
    // Images past the first row load as they come into view.
    let first_row = usize::from(columns);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (s.title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main class=(format!("lw {layout} c{columns}")) data-widget=(widget_id) data-layout=(layout) data-columns=(columns) {
                    h1 { (s.title) }
                    @if media.is_empty() {
                        p { "No posts yet." }
                    } @else {
                        ul aria-label=(format!("Posts of {}", s.title)) tabindex=[(s.layout == Layout::Slider).then_some("0")] {
                            @for (i, m) in media.iter().enumerate() {
                                li { (post(m, i >= first_row, s.layout == Layout::List)) }
                            }
                        }
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

fn post(m: &MediaItem, lazy: bool, captioned: bool) -> maud::Markup {
    let (w, h) = match (m.width, m.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => (SQUARE, SQUARE),
    };
    let caption = m.caption.as_deref().filter(|c| !c.trim().is_empty());
    let alt = caption.unwrap_or("A post on Instagram");
    let marker = match m.kind {
        MediaKind::Image => None,
        MediaKind::Video => Some(("▶", "Video")),
        MediaKind::Carousel => Some(("❐", "Several photos")),
    };
    let image = html! {
        img src=(m.image_url()) alt=(alt) width=(w) height=(h) loading=[lazy.then_some("lazy")] decoding="async";
        @if let Some((sign, what)) = marker {
            span class="m" aria-hidden="true" { (sign) }
            span class="v" { (what) }
        }
        @if captioned { @if let Some(c) = caption { span { (c) } } }
    };
    html! {
        @if let Some(link) = m.permalink.as_deref().filter(|l| l.starts_with("https://")) {
            a href=(link) target="_blank" rel="noopener noreferrer" { (image) }
        } @else {
            (image)
        }
    }
}
