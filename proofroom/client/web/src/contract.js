// The contract (document roots and fields, enums, roles, close codes), generated from
// proofroom/shared by scripts/build_web.py and embedded in the bundle: one source of truth.
import contract from '../dist/contract.json'

export const CONTRACT = contract
export const ROOTS = contract.roots
export const F = contract.fields
export const ENUMS = contract.enums
export const CLOSE = contract.protocol.CloseCode
export const MESSAGE = contract.protocol.MessageType
export const PERMANENT_CLOSE = new Set(contract.protocol.permanent_close_codes)
export const MAX_TEXT = contract.limits.MAX_TEXT_CHARS
/** The original upload's revision id: what a pin or layer without `revision` is on. */
export const ORIGINAL_REVISION = contract.original_revision || 'v1'

/** Whether `role` may perform `action` (view, comment, edit, decide, administer). */
export function can (role, action) {
  return (contract.permissions[role] || []).includes(action)
}

/** Layer states, least favourable first, for sorting and badges. */
export const LAYER_STATE_LABEL = {
  pending: 'Pending',
  approved: 'Approved',
  changes_requested: 'Changes requested',
  rejected: 'Rejected',
  superseded: 'Superseded' // another variant of its round was approved
}

export const DECISION_LABEL = {
  approve: 'Approved',
  request_changes: 'Requested changes',
  reject: 'Rejected'
}
