// The HTTP API: JSON in and out, errors as ApiError(status, code, message).

export class ApiError extends Error {
  constructor (status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

export class Api {
  constructor (token) {
    this.token = token
  }

  /** URL of a blob (images use the query token: an <img> cannot send headers). */
  blobUrl (id) {
    return `/blobs/${encodeURIComponent(id)}?token=${encodeURIComponent(this.token)}`
  }

  async request (method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` }
    let payload
    if (body instanceof FormData) payload = body
    else if (body !== undefined) {
      headers['Content-Type'] = 'application/json'
      payload = JSON.stringify(body)
    }
    let response
    try {
      response = await fetch(path, { method, headers, body: payload })
    } catch (err) {
      throw new ApiError(0, 'network', 'The server cannot be reached.')
    }
    if (!response.ok) throw await errorOf(response)
    return response
  }

  async json (method, path, body) {
    const response = await this.request(method, path, body)
    return response.status === 204 ? null : response.json()
  }

  get (path) { return this.json('GET', path) }
  post (path, body) { return this.json('POST', path, body ?? {}) }
  put (path, body) { return this.json('PUT', path, body ?? {}) }
  del (path) { return this.json('DELETE', path) }
}

async function errorOf (response) {
  let code = 'http_error'
  let message = `${response.status} ${response.statusText}`
  try {
    const body = await response.json()
    if (body && body.error) {
      code = body.error.code || code
      message = body.error.message || message
    }
  } catch (err) {
    // Not JSON (a proxy's page): keep the status line.
  }
  return new ApiError(response.status, code, message)
}

/** Whether an error means "this server does not have that endpoint yet". */
export function isMissingEndpoint (err) {
  return err instanceof ApiError && (err.status === 404 || err.status === 405) &&
    (err.code === 'not_found' || err.code === 'method_not_allowed') &&
    // Starlette's own message for an unknown route, unlike the API's "no such pin" errors.
    /^(Not Found|Method Not Allowed)$/.test(err.message)
}
