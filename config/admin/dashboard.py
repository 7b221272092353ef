"""The activity dashboard on the admin index: panels the apps register, charts drawn as SVG.

Each app registers the panels about its own models (``register``), and each panel decides from
the request whether this staff member may see it (returning None hides it): the index shows
every panel its viewer may see. Charts are inline SVG drawn here, on the server: no script,
no network, no CDN. Their colours are the admin's CSS variables (``--link-fg``,
``--body-quiet-color``, ``--hairline-color``), so they follow its light and dark themes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# The SVG coordinate space; the drawing scales to the panel's width.
WIDTH = 480
COLUMN_HEIGHT = 160
BAR_ROW = 22
LABEL_WIDTH = 150
VALUE_WIDTH = 70
AXIS = 18


@dataclass(frozen=True)
class Figure:
    """One total: "Users 1,234"; ``approximate`` when it is the planner's estimate."""

    label: str
    value: int
    approximate: bool = False
    url: str | None = None

    @property
    def text(self) -> str:
        return f"{'about ' if self.approximate else ''}{self.value:,}"


@dataclass(frozen=True)
class Chart:
    """Counts to draw: per day as columns (``points`` in date order), or per category as bars."""

    title: str
    points: Sequence[tuple[str, int]]
    bars: bool = False
    unit: str = ""
    empty: str = "Nothing yet."

    @property
    def total(self) -> int:
        return sum(value for _, value in self.points)

    def svg(self) -> SafeString:
        if not self.points or (self.bars and not self.total):
            return format_html('<p class="chart-empty">{}</p>', self.empty)
        return self._bars() if self.bars else self._columns()

    def _describe(self, label: str, value: int) -> str:
        return f"{label}: {value:,}{' ' + self.unit if self.unit else ''}"

    def _columns(self) -> SafeString:
        peak = max(value for _, value in self.points) or 1
        count = len(self.points)
        plot_top, plot_bottom = 14, COLUMN_HEIGHT - AXIS
        slot = WIDTH / count
        bars = []
        for i, (label, value) in enumerate(self.points):
            height = (plot_bottom - plot_top) * value / peak
            bars.append(
                (
                    f"{i * slot + slot * 0.15:.1f}",
                    f"{plot_bottom - height:.1f}",
                    f"{slot * 0.7:.1f}",
                    f"{height:.1f}",
                    self._describe(label, value),
                )
            )
        ticks = sorted({0, count // 2, count - 1})
        labels = [(f"{i * slot + slot / 2:.1f}", self.points[i][0]) for i in ticks]
        return format_html(
            '<svg class="chart chart-columns" viewBox="0 0 {w} {h}" role="img" aria-label="{title}">'
            "<title>{title}</title>"
            '<line class="axis" x1="0" y1="{bottom}" x2="{w}" y2="{bottom}"></line>'
            '<text class="peak" x="0" y="10">{peak}</text>'
            "{bars}{labels}</svg>",
            w=WIDTH,
            h=COLUMN_HEIGHT,
            title=self.title,
            bottom=plot_bottom,
            peak=f"max {peak:,}",
            bars=format_html_join(
                "",
                '<rect class="bar" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
                bars,
            ),
            labels=format_html_join(
                "",
                '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
                ((x, COLUMN_HEIGHT - 4, t) for x, t in labels),
            ),
        )

    def _bars(self) -> SafeString:
        peak = max(value for _, value in self.points) or 1
        span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
        rows = []
        for i, (label, value) in enumerate(self.points):
            y = i * BAR_ROW
            rows.append(
                format_html(
                    '<g><title>{}</title><text class="label" x="{}" y="{}" text-anchor="end">{}</text>'
                    '<rect class="bar" x="{}" y="{}" width="{}" height="{}"></rect>'
                    '<text class="value" x="{}" y="{}">{}</text></g>',
                    self._describe(label, value),
                    LABEL_WIDTH - 6,
                    y + 15,
                    label if len(label) <= 22 else label[:21] + "…",
                    LABEL_WIDTH,
                    y + 4,
                    f"{max(span * value / peak, 1 if value else 0):.1f}",
                    BAR_ROW - 8,
                    LABEL_WIDTH + span * value / peak + 6,
                    y + 15,
                    f"{value:,}",
                )
            )
        return format_html(
            '<svg class="chart chart-bars" viewBox="0 0 {} {}" role="img" aria-label="{}"><title>{}</title>{}</svg>',
            WIDTH,
            len(self.points) * BAR_ROW,
            self.title,
            self.title,
            mark_safe("".join(rows)),  # noqa: S308 (each row built by format_html above)
        )


@dataclass(frozen=True)
class Panel:
    title: str
    figures: Sequence[Figure] = ()
    charts: Sequence[Chart] = ()
    note: str = ""


PanelBuilder = Callable[[HttpRequest], Panel | None]


@dataclass
class _Registry:
    builders: list[tuple[int, str, PanelBuilder]] = field(default_factory=list)


_registry = _Registry()


def register(order: int) -> Callable[[PanelBuilder], PanelBuilder]:
    """Add a panel builder to the index (lower ``order`` first). It returns None for a viewer
    who may not see it. Registering the same function twice (a re-import) keeps one."""

    def decorate(builder: PanelBuilder) -> PanelBuilder:
        name = f"{builder.__module__}.{builder.__qualname__}"
        _registry.builders = [b for b in _registry.builders if b[1] != name]
        _registry.builders.append((order, name, builder))
        _registry.builders.sort(key=lambda b: (b[0], b[1]))
        return builder

    return decorate


def panels_for(request: HttpRequest) -> list[Panel]:
    panels = [builder(request) for _, _, builder in _registry.builders]
    return [panel for panel in panels if panel is not None]
