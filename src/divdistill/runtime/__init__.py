"""How jobs run: the job server and its client (local runs fork jobs from one process that imported
everything once), the idle cores a local run may take, the device and its precision, and the guard that
stops a job at its first non-finite loss."""
