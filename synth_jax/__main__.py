from synth_jax.cli import main

raise SystemExit(main())
