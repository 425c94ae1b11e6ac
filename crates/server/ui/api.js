// The dashboard's only way to the server: the JSON API, same origin. Errors come back as
// ApiError with the server's own code and message, so views can show them plainly.
const TOKEN_KEY = 'sluice.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  toString() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (t) => (t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY));

let authNeeded = null;
/** Called with the server's message when a request is refused for want of a key (401). */
export function onAuthNeeded(fn) { authNeeded = fn; }

let connection = () => {};
/** Called with true/false as requests reach the server or not. */
export function onConnection(fn) { connection = fn; }

export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    connection(false);
    throw new ApiError(0, 'network', `cannot reach the server (${e.message})`);
  }
  connection(true);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const err = data && data.error
      ? data.error
      : { code: `http_${resp.status}`, message: (text || resp.statusText).slice(0, 300) };
    if (resp.status === 401 && authNeeded) authNeeded(err.message);
    throw new ApiError(resp.status, err.code, err.message);
  }
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b) => api('POST', p, b === undefined ? {} : b);
export const put = (p, b) => api('PUT', p, b);
export const del = (p) => api('DELETE', p);
export const enc = encodeURIComponent;
