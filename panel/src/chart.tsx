/**
 * A uPlot time chart of a few series over shared x values (seconds), each on a named
 * scale: one scale is the left axis, a second one (if any) the right axis. Redrawn when
 * its data changes, resized with the window.
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

/**
 * An x range for `xs`: the data's, or one point padded by `padS` either side (uPlot alone
 * would show 1000 days after a lone point of a time scale in seconds).
 */
export function xRange(xs: readonly number[], padS: number): uPlot.Range.Function {
  return (_u, min, max) => (xs.length === 1 || min === max ? [xs[0]! - padS, xs[0]! + padS] : [min, max]);
}

/** A y axis as wide as its longest tick label (7 px a character, 24 px for the ticks and the gap). */
export const axisSize: uPlot.Axis.Size = (_u, values) => Math.max(40, ...(values ?? []).map((v) => String(v).length * 7 + 24));

export interface PlotSeries {
  label: string;
  color: string;
  /** The scale (and axis) the series is drawn on. */
  scale: string;
  /** A dashed line (a target, say). */
  dashed?: boolean;
  values: Array<number | null>;
}

export interface PlotAxis {
  scale: string;
  label: string;
  /** The scale starts at 0 rather than at the data's minimum. */
  fromZero?: boolean;
}

export function TimePlot({ xs, series, axes, padS, height = 200 }: { xs: number[]; series: PlotSeries[]; axes: PlotAxis[]; padS: number; height?: number }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const host = el.current;
    if (!host) return undefined;
    const scales: uPlot.Scales = {
      x: { time: true, range: xRange(xs, padS) },
    };
    for (const a of axes) if (a.fromZero) scales[a.scale] = { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] };
    const plot = new uPlot(
      {
        width: Math.max(280, host.clientWidth),
        height,
        series: [{}, ...series.map((s) => ({ label: s.label, scale: s.scale, stroke: s.color, width: 2, dash: s.dashed ? [6, 4] : undefined, points: { show: true } }))],
        axes: [{}, ...axes.map((a, i) => ({ scale: a.scale, label: a.label, size: axisSize, side: i === 0 ? 3 : 1, grid: { show: i === 0 } }))],
        scales,
        legend: { live: true },
      },
      [xs, ...series.map((s) => s.values)] as uPlot.AlignedData,
      host,
    );
    const resize = () => plot.setSize({ width: Math.max(280, host.clientWidth), height });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [xs, series, axes, padS, height]);
  return <div class="chart" ref={el} />;
}
