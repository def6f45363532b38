//! Module rewriting: profiling instrumentation and profile-guided specialization.
