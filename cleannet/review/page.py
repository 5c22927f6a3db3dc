"""The review page's HTML: one file with its styles, scripts and plots inline; thumbnails are
JPEG files in the same folder (thumbs/), loaded lazily.

Sections: summary, plots, per-class table (sortable by clicking a column head), the
verification queue (mark each sample right / wrong, download the filled queue.tsv), and per
class the most suspicious samples (thumbnails, or a table of keys without images). The
page needs no server and no network: it opens from disk.
"""

from __future__ import annotations

import dataclasses
import html
import json

OPEN_CLASSES = 10  # per-class galleries shown unfolded (the noisiest classes); the others fold
QUEUE_FOLD = 100  # queue rows per fold (the first fold open)

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
th.sortable{cursor:pointer;user-select:none;background:#f4f4f4}th.sortable:hover{background:#e4e4e4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots figure{margin:0}.plots svg{max-width:100%;height:auto}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{width:150px;font-size:11px;border:1px solid #ddd;padding:4px}
.card img,.ph{display:block;width:96px;height:96px;object-fit:contain;margin:auto;background:#f8f8f8}
.ph{line-height:96px;text-align:center;color:#999;font-size:11px}
.tag{font-size:11px;padding:0 4px;border-radius:3px;background:#fff3bf}.tag.no{background:#ffe3e3}
.wrong{color:#c92a2a}details{margin:4px 0}summary{cursor:pointer}
#queue td img,#queue td .ph{width:48px;height:48px;line-height:48px}
"""

SCRIPT = """
function sortTable(th){
  var table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex,num=th.dataset.type==='num';
  var asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';
  var rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){
    var x=a.cells[col].dataset.v||a.cells[col].textContent,y=b.cells[col].dataset.v||b.cells[col].textContent;
    var c=num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);return asc?c:-c;});
  rows.forEach(function(r){body.appendChild(r);});
}
document.querySelectorAll('th.sortable').forEach(function(th){
  th.addEventListener('click',function(){sortTable(th);});});
var queue=JSON.parse(document.getElementById('queue-data').textContent);
function marks(){var m={};document.querySelectorAll('#queue input[type=radio]:checked').forEach(function(r){
  m[r.name]=r.value;});return m;}
function updateCount(){var el=document.getElementById('queue-count');
  if(el)el.textContent=Object.keys(marks()).length+' of '+queue.length+' marked';}
var queueTable=document.getElementById('queue');if(queueTable)queueTable.addEventListener('change',updateCount);
function queueText(){var m=marks();return queue.map(function(q,i){
  return [q[0],q[1],q[2],m['v'+i]||''].join('\\t')+'\\n';}).join('');}
var button=document.getElementById('download-queue');
if(button){button.addEventListener('click',function(){
  var blob=new Blob([queueText()],{type:'text/tab-separated-values'});
  var a=document.createElement('a');a.href=URL.createObjectURL(blob);a.download='queue.tsv';
  document.body.appendChild(a);a.click();a.remove();});}
updateCount();
document.addEventListener('toggle',function(e){var d=e.target;
  if(d.tagName!=='DETAILS'||!d.open)return;
  var t=d.querySelector(':scope > template');if(t){d.appendChild(t.content.cloneNode(true));t.remove();}},true);
"""


@dataclasses.dataclass
class Sample:
    """One sample shown on the page."""

    index: int
    key: str
    class_name: str
    similarity: float
    margin: float
    suggested: str
    verdict: int
    thumbnail: str | None  # path relative to the page, None: no image


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def number(value: float) -> str:
    return "" if value != value else "%.3f" % value  # nan (no margin) shows empty


def image_cell(sample: Sample, with_images: bool) -> str:
    if not with_images:
        return ""
    if sample.thumbnail is None:
        return '<div class="ph">no image</div>'
    return '<img loading="lazy" decoding="async" src="%s" alt="%s">' % (esc(sample.thumbnail), esc(sample.key))


def sample_card(sample: Sample) -> str:
    suggested = " &rarr; <b>%s</b>" % esc(sample.suggested) if sample.suggested else ""
    verdict = "" if sample.verdict else ' <span class="wrong">judged wrong</span>'
    return ('<div class="card">%s<div>%s</div><div>cos %s, margin %s%s</div><div>%s%s</div></div>'
            % (image_cell(sample, True), esc(sample.key), number(sample.similarity), number(sample.margin),
               verdict, esc(sample.class_name), suggested))


def sample_table(samples: list[Sample], with_images: bool, queue: bool = False, first: int = 0) -> str:
    """A table of samples; with `queue`, right / wrong buttons named v<first + row>."""
    head = ("<th></th>" if with_images else "") + "<th>key</th><th>label</th><th>cos</th><th>margin</th>" \
        "<th>verdict</th><th>suggested class</th>" + ("<th>label right?</th>" if queue else "")
    rows = []
    for position, s in enumerate(samples, first):
        mark = ""
        if queue:
            mark = ('<td><label><input type="radio" name="v%d" value="1"> right</label> '
                    '<label><input type="radio" name="v%d" value="0"> wrong</label></td>' % (position, position))
        rows.append("<tr>%s<td>%s</td><td>%s</td><td class=num>%s</td><td class=num>%s</td><td>%s</td>"
                    "<td>%s</td>%s</tr>" % ("<td>%s</td>" % image_cell(s, True) if with_images else "",
                                            esc(s.key), esc(s.class_name), number(s.similarity),
                                            number(s.margin), "correct" if s.verdict else "wrong",
                                            esc(s.suggested), mark))
    return "<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (head, "".join(rows))


def class_table(rows) -> str:
    """The per-class table, noisiest first; every column sorts on a click."""
    heads = [("class", "text"), ("samples", "num"), ("judged wrong", "num"), ("estimated noise", "num"),
             ("verification labels", "text")]
    head = "".join('<th class="sortable" data-type="%s">%s</th>' % (kind, name) for name, kind in heads)
    body = []
    for row in sorted(rows, key=lambda r: (-r.noise, r.name)):
        verified = {None: "unknown", True: "yes", False: '<span class="tag no">none</span>'}[row.verified]
        body.append('<tr><td>%s</td><td class=num>%d</td><td class=num>%d</td><td class=num data-v="%.6f">%.1f%%</td>'
                    "<td>%s</td></tr>" % (esc(row.name), row.samples, row.judged_wrong, row.noise,
                                         100 * row.noise, verified))
    return '<table id="class-table"><thead><tr>%s</tr></thead><tbody>%s</tbody></table>' % (head, "".join(body))


def class_galleries(rows, samples_by_class: dict[int, list[Sample]], with_images: bool) -> str:
    """Per class (noisiest first) its most suspicious samples, in a fold of its own.

    A folded class keeps its samples in a <template> (parsed, but neither laid out nor loading
    images) that the page's script fills in when the fold opens: a page of 1,000 classes opens
    as fast as one of OPEN_CLASSES."""
    parts = []
    for position, row in enumerate(sorted(rows, key=lambda r: (-r.noise, r.name))):
        samples = samples_by_class.get(row.class_id, [])
        if not samples:
            continue
        tag = ' <span class="tag no">no verification labels</span>' if row.verified is False else ""
        content = ('<div class="cards">%s</div>' % "".join(sample_card(s) for s in samples)
                   if with_images else sample_table(samples, False))
        is_open = position < OPEN_CLASSES
        parts.append('<details%s><summary><b>%s</b>: %d of %d judged wrong (%.1f%%)%s</summary>%s</details>'
                     % (" open" if is_open else "", esc(row.name), row.judged_wrong, row.samples,
                        100 * row.noise, tag, content if is_open else "<template>%s</template>" % content))
    return "\n".join(parts)


def queue_section(queue: list[Sample], with_images: bool) -> str:
    """The queue in folds of QUEUE_FOLD rows (the first open, the others filled in when opened)."""
    if not queue:
        return '<p>No queue (run with <code>--queue=N</code>).</p>'
    folds = []
    for start in range(0, len(queue), QUEUE_FOLD):
        table = sample_table(queue[start:start + QUEUE_FOLD], with_images, queue=True, first=start)
        folds.append('<details%s><summary>samples %d-%d</summary>%s</details>'
                     % (" open" if start == 0 else "", start + 1, min(len(queue), start + QUEUE_FOLD),
                        table if start == 0 else "<template>%s</template>" % table))
    return ('<p>Mark each sample, then download the filled file and merge it into the verified training data '
            '(<code>util/merge_queue.py</code>, see docs/pipeline.md). Unmarked rows stay empty. '
            '<button id="download-queue">Download queue.tsv</button> <span id="queue-count"></span></p>'
            '<div id="queue">%s</div>' % "".join(folds))


def queue_json(queue_rows: list[tuple[str, str, str]]) -> str:
    """The queue's (key, image_path, class_name) rows as JSON safe inside a script element."""
    return json.dumps(queue_rows).replace("</", "<\\/")


def render_page(title: str, summary_html: str, plots: list[tuple[str, str]], class_rows, samples_by_class,
                queue: list[Sample], queue_rows, with_images: bool) -> str:
    """The whole page as one string."""
    figures = "".join("<figure>%s<figcaption>%s</figcaption></figure>" % (svg, esc(caption))
                      for caption, svg in plots)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title>"
            '<link rel="icon" href="data:,"><style>%s</style></head><body>\n<h1>%s</h1>\n%s\n'
            '<h2>Plots</h2><div class="plots">%s</div>\n<h2>Estimated noise per class</h2>'
            "<p>Click a column head to sort.</p>%s\n<h2>Verification queue</h2>%s\n"
            "<h2>Most suspicious samples per class</h2>%s\n"
            '<script type="application/json" id="queue-data">%s</script>\n<script>%s</script></body></html>\n'
            % (esc(title), STYLE, esc(title), summary_html, figures, class_table(class_rows),
               queue_section(queue, with_images), class_galleries(class_rows, samples_by_class,
                                                                               with_images),
               queue_json(queue_rows), SCRIPT))
