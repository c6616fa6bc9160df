/** The results chart: throughput and p99 per run, side by side, rendered to SVG headless by Vega. */
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

export interface ChartPoint {
  label: string;
  throughput: number;
  p99Ms: number;
}

export async function renderChart(points: ChartPoint[]): Promise<string> {
  const order = points.map((p) => p.label);
  const bar = (field: keyof ChartPoint, title: string, color: string) => ({
    width: 360,
    height: { step: 18 },
    mark: { type: 'bar' as const, color },
    encoding: {
      y: { field: 'label', type: 'nominal' as const, sort: order, title: null, axis: { labelLimit: 440 } },
      x: { field, type: 'quantitative' as const, title },
      tooltip: [{ field: 'label' }, { field }],
    },
  });
  const spec: vegaLite.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'rotor benchmark: throughput (ok responses/s) and p99 latency per run',
    data: { values: points },
    hconcat: [bar('throughput', 'ok responses / s', '#4c78a8'), { ...bar('p99Ms', 'p99 latency (ms)', '#e45756'), encoding: { ...bar('p99Ms', 'p99 latency (ms)', '#e45756').encoding, y: { field: 'label', type: 'nominal' as const, sort: order, axis: null } } }],
    config: { font: 'sans-serif' },
  };
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}
