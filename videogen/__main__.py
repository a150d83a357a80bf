from videogen.cli import main

raise SystemExit(main())
