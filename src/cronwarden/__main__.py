from cronwarden.cli import main

raise SystemExit(main())
