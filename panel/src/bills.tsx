/**
 * Bills: the reports of `/api/v1/reports`, a report's line items, and its CSV and JSON
 * as billing wrote them (`/api/v1/report-files/…`, byte for byte `logmeter report`'s files).
 * A download link is shown only for a file the report's answer says exists.
 */
import { useState } from 'preact/hooks';
import { idPath, query } from './api.js';
import { pending, useFetched } from './fetched.js';

interface ReportSummary {
  report_id: string;
  period_kind: string;
  period_start: string;
  period_end: string;
  totals: Record<string, number>;
  line_items: number;
}

interface Report extends Omit<ReportSummary, 'line_items'> {
  /** Which of the report's files billing wrote (only those can be downloaded). */
  files: { csv: boolean; json: boolean };
  items: Array<{ meter: string; unit: string; quantity: number; free_quantity: number; billable: number; unit_price: number; amount: number; currency: string }>;
}

const money = (totals: Record<string, number>) =>
  Object.entries(totals)
    .map(([c, v]) => `${v.toFixed(2)} ${c}`)
    .join(', ');
const day = (iso: string) => iso.slice(0, 16).replace('T', ' ');

function ReportView({ id, tenant }: { id: string; tenant: string | undefined }) {
  const { value: report, error } = useFetched<Report>(`/api/v1/reports/${idPath(id)}${query({ tenant })}`);
  if (!report) return pending(error, false);
  const file = (ext: string) => `/api/v1/report-files/${idPath(id)}.${ext}${query({ tenant })}`;
  return (
    <article class="report" aria-label={`Report ${id}`}>
      <h2>{report.report_id}</h2>
      <p>
        {report.period_kind} · {day(report.period_start)} to {day(report.period_end)} · <strong>{money(report.totals)}</strong>
      </p>
      {report.files.csv || report.files.json ? (
        <p class="downloads">
          {report.files.csv && (
            <a href={file('csv')} download>
              Download CSV
            </a>
          )}{' '}
          {report.files.json && (
            <a href={file('json')} download>
              Download JSON
            </a>
          )}
        </p>
      ) : (
        <p class="downloads empty">No files to download: billing has not written this report’s CSV and JSON on this server (the operator’s `logmeter report` writes them).</p>
      )}
      <div class="scroll">
        <table class="numbers">
          <thead>
            <tr>
              <th>Meter</th>
              <th>Unit</th>
              <th>Quantity</th>
              <th>Free</th>
              <th>Billable</th>
              <th>Unit price</th>
              <th>Amount</th>
            </tr>
          </thead>
          <tbody>
            {report.items.map((li) => (
              <tr>
                <td>{li.meter}</td>
                <td>{li.unit}</td>
                <td class="num">{li.quantity}</td>
                <td class="num">{li.free_quantity}</td>
                <td class="num">{li.billable}</td>
                <td class="num">{li.unit_price}</td>
                <td class="num">
                  {li.amount} {li.currency}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </article>
  );
}

export function BillsPage({ tenant }: { tenant: string | undefined }) {
  const { value, error } = useFetched<{ items: ReportSummary[] }>(`/api/v1/reports${query({ tenant })}`);
  const [open, setOpen] = useState<string | undefined>();
  const reports = value?.items;
  if (!reports) return pending(error, false);
  if (reports.length === 0) return <p class="empty">No billing reports yet.</p>;
  return (
    <section aria-label="Bills" class="bills">
      <table class="numbers reports">
        <thead>
          <tr>
            <th>Report</th>
            <th>Period</th>
            <th>Items</th>
            <th>Total</th>
          </tr>
        </thead>
        <tbody>
          {reports.map((r) => (
            <tr class={r.report_id === open ? 'selected' : ''}>
              <td>
                <button type="button" class="link" onClick={() => setOpen(r.report_id)}>
                  {r.report_id}
                </button>
              </td>
              <td>
                {r.period_kind} {day(r.period_start)}
              </td>
              <td class="num">{r.line_items}</td>
              <td class="num">{money(r.totals)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {open && <ReportView id={open} tenant={tenant} key={open} />}
    </section>
  );
}
