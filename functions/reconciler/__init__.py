"""The reconciler: walks klikit's orders API and queues an event for each order the projection lacks."""
