// Stand-ins for an app's own modules, used by the README examples.
export const approvals = { create: (orderId: string) => ({ id: `apr_${orderId}` }) };
export const payments = { refund: (orderId: string) => ({ id: `pay_${orderId}` }) };
